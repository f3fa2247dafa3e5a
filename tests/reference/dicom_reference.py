#!/usr/bin/python3
"""Reference values for the DICOM reader (tests/datasets/DicomReferenceTests.cs keeps them): what Debian's pydicom 2.3
(python3-pydicom) and numpy read from pydicom's own test files in tests/datasets/data/dicom.

- images: per file, the voxels as the reader lays them out (colour samples first: np.moveaxis(pixel_array, -1, 0)),
  pixel_array's numpy dtype, and min, max, mean, sum of pixel_array * RescaleSlope + RescaleIntercept (float64); the
  spacing: PixelSpacing (the shared functional groups' PixelMeasures for enhanced files), 1 where absent, after the
  frame step (GridFrameOffsetVector's) for multi-frame dose;
- elements: len(file_meta), the number of elements Dataset.iterall() walks, and the deepest sequence nesting;
- samples: the few voxels, sums and rows the other tests check.

Usage: /usr/bin/python3 tests/reference/dicom_reference.py   (prints one JSON object)
"""
import json
import os

import numpy as np
import pydicom

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "data", "dicom")

IMAGES = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm",
          "SC_rgb_small_odd.dcm", "image_dfl.dcm", "rtdose.dcm", "rtdose_expb.dcm", "liver_1frame.dcm"]
ELEMENTS = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm",
            "image_dfl.dcm", "rtdose.dcm", "rtdose_expb.dcm", "liver_1frame.dcm", "test-SR.dcm", "UN_sequence.dcm",
            "priv_SQ.dcm", "nested_priv_SQ.dcm", "JPEG2000.dcm"]


def read(name):
    return pydicom.dcmread(os.path.join(DATA, name))


def voxels(ds):
    a = ds.pixel_array
    return np.moveaxis(a, -1, 0) if ds.get("SamplesPerPixel", 1) > 1 else a


def spacing(ds):
    if "PixelSpacing" in ds:
        rows = [float(v) for v in ds.PixelSpacing]
    elif "SharedFunctionalGroupsSequence" in ds:
        rows = [float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    else:
        rows = [1.0, 1.0]
    if int(ds.get("NumberOfFrames", 1)) > 1 and "GridFrameOffsetVector" in ds:
        offsets = [float(v) for v in ds.GridFrameOffsetVector]
        rows = [offsets[1] - offsets[0]] + rows
    return rows


def image(name):
    ds = read(name)
    a = voxels(ds)
    values = a.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    return {"shape": list(a.shape), "dtype": a.dtype.name, "min": float(values.min()), "max": float(values.max()),
            "mean": float(values.mean()), "sum": float(values.sum()), "spacing": spacing(ds)}


def depth(dataset, level=0):
    deepest = level if len(dataset) else 0
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                deepest = max(deepest, depth(item, level + 1))
    return deepest


def elements(name):
    ds = read(name)
    return {"meta": len(ds.file_meta), "elements": sum(1 for _ in ds.iterall()), "depth": depth(ds)}


def samples():
    ct = read("CT_small.dcm")
    mr = read("MR_small_bigendian.dcm")
    planes = voxels(read("ExplVR_BigEnd.dcm"))
    dose = read("rtdose.dcm").pixel_array
    liver = read("liver_1frame.dcm").pixel_array.astype(np.int64).sum(1)
    rows = np.nonzero(liver)[0]
    return {
        "ct_first_row": [int(v) for v in ct.pixel_array[0, :6]],
        "ct_intercept": float(ct.RescaleIntercept),
        "mr_bigendian_first": [int(v) for v in mr.pixel_array.flat[:6]],
        "explvr_channel_sums": [float(v) for v in planes.astype(np.float64).sum((1, 2))],
        "sc_rgb_odd_planes": [int(v) for v in voxels(read("SC_rgb_small_odd.dcm")).flat],
        "rtdose_frame_sums": [int(v) for v in dose.astype(np.int64).sum((1, 2))[:4]],
        "liver_rows": {"first": int(rows[0]), "last": int(rows[-1]), "first_count": int(liver[rows[0]])},
    }


print(json.dumps({"images": {n: image(n) for n in IMAGES}, "elements": {n: elements(n) for n in ELEMENTS},
                  "samples": samples()}, indent=1))
