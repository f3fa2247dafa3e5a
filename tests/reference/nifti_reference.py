"""NIfTI references from nibabel (Debian's python3-nibabel), for tests/datasets/Nifti*Tests.cs.

    /usr/bin/python3 nifti_reference.py make DIR          writes the nibabel-made test files into DIR
    /usr/bin/python3 nifti_reference.py describe FILE...  prints, per file, what nibabel reads (as C# initializers)
    /usr/bin/python3 nifti_reference.py check FILE...     prints what nibabel reads from each FILE, one JSON object
                                                          keyed by file name (whole data)

The tests keep the numbers `describe` printed once; only the cross-check of our writer runs `check` live.
Voxels are listed in our layout: nibabel's (x, y, z, t, ...) array with its axes reversed, C order.
"""
import json
import sys

import numpy as np
import nibabel as nib


def ours(img):
    """nibabel's data (scaled as nibabel scales it) with the axes reversed, RGB as a leading channel axis."""
    data = np.asanyarray(img.dataobj)
    if data.dtype.names:
        data = np.stack([data[name] for name in data.dtype.names], axis=-1)
        return np.ascontiguousarray(data.transpose(tuple(range(data.ndim - 1, -1, -1))))
    return np.ascontiguousarray(data.transpose(tuple(range(data.ndim - 1, -1, -1))))


def patch_header(path, cls, **fields):
    """Sets raw header fields in a file nibabel wrote, through nibabel's own header class."""
    opener = nib.openers.ImageOpener
    with opener(path, 'rb') as f:
        hdr = cls.from_fileobj(f)
        rest = f.read()
    for key, value in fields.items():
        hdr[key] = value
    with opener(path, 'wb') as f:
        hdr.write_to(f)
        f.write(rest)


def make(out):
    rng = np.random.default_rng(12)
    # Big-endian NIfTI-2, int32, qform only (a rotation and qfac -1), scaled by 0.5 and -3.
    data = rng.integers(-1000, 1000, size=(5, 4, 3), dtype=np.int32)
    hdr = nib.Nifti2Header(endianness='>')
    img = nib.Nifti2Image(data, None, header=hdr)
    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([1.5, 2.0, -2.5])
    aff[:3, 3] = [10.0, -20.0, 30.0]
    img.set_qform(aff, code=1)
    img.set_sform(None, code=0)
    img.header.set_data_dtype(np.int32)
    nib.save(img, f'{out}/be_nifti2_qform.nii')
    patch_header(f'{out}/be_nifti2_qform.nii', nib.Nifti2Header, scl_slope=0.5, scl_inter=-3.0)

    # One small file per data type, values spanning each type's range.
    shape = (4, 3, 2)
    kinds = {
        'int8': np.int8, 'uint16': np.uint16, 'uint32': np.uint32, 'int64': np.int64,
        'uint64': np.uint64, 'float64': np.float64, 'uint8': np.uint8, 'int16': np.int16,
        'int32': np.int32, 'float32': np.float32, 'complex64': np.complex64,
    }
    for name, dtype in kinds.items():
        if np.dtype(dtype).kind in 'iu':
            info = np.iinfo(dtype)
            high = info.max if name != 'uint64' else np.iinfo(np.int64).max
            values = np.linspace(info.min, high, num=24, dtype=np.float64)
            data = np.array([max(int(info.min), min(int(v), int(high))) for v in values], dtype=object).astype(dtype).reshape(shape)
            data.flat[-1] = high
            data.flat[0] = info.min
        else:
            data = (rng.standard_normal(shape) * 1000).astype(dtype)
        img = nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0]), dtype=dtype)
        nib.save(img, f'{out}/dtype_{name}.nii.gz')
    data = np.full(shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    img = nib.Nifti1Image(data, np.eye(4), dtype=np.uint64)
    nib.save(img, f'{out}/dtype_uint64_huge.nii')

    rgb = np.zeros(shape, dtype=[('R', 'u1'), ('G', 'u1'), ('B', 'u1')])
    rgb['R'] = rng.integers(0, 256, shape)
    rgb['G'] = rng.integers(0, 256, shape)
    rgb['B'] = rng.integers(0, 256, shape)
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), f'{out}/dtype_rgb24.nii')

    # A pair, plain and gzipped: 4D float32.
    data = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    aff = np.array([[0, 0, 2.0, -5], [1.5, 0, 0, 7], [0, 1.25, 0, -9], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Pair(data, aff), f'{out}/pair.img')
    nib.save(nib.Nifti1Pair(data * 2, aff), f'{out}/pair_gz.img.gz')

    # 5D (a vector per voxel), 2D, and one with neither qform nor sform (nibabel's fallback affine).
    data = rng.standard_normal((3, 4, 2, 1, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.75, 1.0, 1.0])), f'{out}/vector5d.nii.gz')
    data = rng.integers(0, 256, size=(6, 5), dtype=np.uint8)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.9, 1.0, 1.0])), f'{out}/slice2d.nii')
    data = rng.integers(-50, 50, size=(5, 4, 3), dtype=np.int16)
    img = nib.Nifti1Image(data, None)
    img.header.set_zooms((1.5, 2.0, 2.5))
    img.header.set_data_dtype(np.int16)
    nib.save(img, f'{out}/noxform.nii')

    # An extension (a comment) between the header and the data.
    data = rng.integers(0, 100, size=(3, 3, 3), dtype=np.int16)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension('comment', b'made by nifti_reference.py'))
    img.header.set_data_dtype(np.int16)
    nib.save(img, f'{out}/extension.nii')


def cs_array(values, fmt='R'):
    return '[' + ', '.join(format_number(v) for v in values) + ']'


def format_number(v):
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if np.isnan(v):
        return 'double.NaN'
    r = repr(v)
    return r


def describe(path):
    img = nib.load(path)
    hdr = img.header
    try:
        data = ours(img)
        stats = np.asarray(data, dtype=np.float64)
        flat = data.reshape(-1)
        n = flat.size
        picks = sorted(set([0, 1, n // 3, n // 2, (2 * n) // 3, n - 1]))
        samples = ', '.join(f'[{i}] = {format_number(flat[i])}' for i in picks)
        dtype = str(data.dtype)
        stat_text = (f'Min: {format_number(stats.min())}, Max: {format_number(stats.max())}, '
                     f'Mean: {format_number(stats.mean())}, Sum: {format_number(stats.sum())}')
        tshape = list(data.shape)
    except Exception as e:  # header only, or a type nibabel reads but we refuse
        samples, dtype, stat_text, tshape = '', f'error: {e}', '', []
    best = img.affine
    print(f'// {path}: {type(img).__name__}, nibabel shape {img.shape}, stored {hdr.get_data_dtype()}, '
          f'zooms {tuple(float(z) for z in hdr.get_zooms())}')
    print(f'//   data dtype {dtype}, tensor shape {tshape}; {stat_text}')
    if samples:
        print(f'//   samples: {samples}')
    print('//   best affine: ' + ', '.join(cs_array(row) for row in best[:3]))
    if hasattr(hdr, 'get_qform'):
        q = hdr.get_qform()
        print('//   qform affine: ' + ', '.join(cs_array(row) for row in q[:3]))
        s = hdr.get_sform()
        print('//   sform affine: ' + ', '.join(cs_array(row) for row in s[:3]))
        print(f'//   codes q {int(hdr["qform_code"])} s {int(hdr["sform_code"])}')


def check(path):
    """What nibabel reads from one file, as a JSON-ready dict."""
    img = nib.load(path)
    data = ours(img)
    out = {
        'shape': list(data.shape),
        'dtype': str(data.dtype),
        'affine': img.affine.tolist(),
        'zooms': [float(z) for z in img.header.get_zooms()],
        'qform_code': int(img.header['qform_code']),
        'sform_code': int(img.header['sform_code']),
        'qform': img.header.get_qform().tolist(),
        'data': data.reshape(-1).astype(np.float64).tolist(),
    }
    return out


if __name__ == '__main__':
    command = sys.argv[1]
    if command == 'make':
        make(sys.argv[2])
    elif command == 'describe':
        for name in sys.argv[2:]:
            describe(name)
    elif command == 'check':
        print(json.dumps({name: check(name) for name in sys.argv[2:]}))
    else:
        sys.exit(f'unknown command {command}')
