using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using Medformer.Datasets.Transforms;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Loading;

/// <summary>
/// Batches from a weighted mixture of corpora, prepared by background workers (PyTorch's DataLoader with a
/// DistributedSampler and a weighted mix).
/// <para>
/// Sources whose samples come out of their pipelines with the same dimensionality and shapes form a group; each
/// batch is drawn from one group (chosen by the group's total weight), and each of its samples from one of the
/// group's sources (chosen by weight), so 2D and 3D never share a batch while a batch may mix organs and
/// modalities. The order is a pure function of the seed, the rank and the batch index: the same for any number of
/// workers, and resumable from a batch index alone (<see cref="Batches"/>). A sample whose file is bad is replaced
/// by another of the same corpus and counted (<see cref="Skipped"/>), unless <see cref="LoaderOptions.Strict"/>.
/// </para>
/// </summary>
public sealed class DataLoader
{
    readonly LoaderSource[] sources;
    readonly LoaderOptions options;
    readonly SourceGroup[] groups;
    readonly ConcurrentDictionary<string, long> skipped = new();
    readonly ConcurrentQueue<string> skipReasons = new();

    public DataLoader(IReadOnlyList<LoaderSource> sources, LoaderOptions options)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(options);
        if (sources.Count == 0) throw new ArgumentException("a loader needs at least one corpus");
        options.Validate();
        foreach (var source in sources) source.Validate();
        this.sources = [.. sources];
        this.options = options;
        groups = GroupSources();
    }

    public LoaderOptions Options => options;

    /// <summary>Bad samples skipped so far, per corpus name.</summary>
    public IReadOnlyDictionary<string, long> Skipped => skipped;

    /// <summary>The first few reasons samples were skipped (file and fault), for the run's report.</summary>
    public IReadOnlyList<string> SkipReasons => [.. skipReasons];

    /// <summary>Groups of sources that share dimensionality and shape, with each group's shapes (for reports and tests).</summary>
    public IReadOnlyList<string> GroupKeys => [.. groups.Select(g => g.Key)];

    /// <summary>
    /// The endless stream of training batches, starting at batch <paramref name="start"/> (0 for a new run, the
    /// checkpoint's next batch to resume). Dispose each batch after its step; breaking out of the loop stops the
    /// workers and frees what they prepared.
    /// </summary>
    public IEnumerable<Batch> Batches(long start = 0)
    {
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, "batch index must be 0 or more");
        return Execute(MixturePlans(start));
    }

    /// <summary>
    /// One ordered pass over every sample of this rank's shard of <paramref name="sourceIndex"/> (evaluation): no
    /// shuffling, no padding, the last batch may be short, a bad sample is dropped and counted (or thrown, if strict).
    /// </summary>
    public IEnumerable<Batch> Pass(int sourceIndex = 0)
    {
        if (sourceIndex < 0 || sourceIndex >= sources.Length)
            throw new ArgumentOutOfRangeException(nameof(sourceIndex), sourceIndex, $"the loader has {sources.Length} sources");
        return Execute(PassPlans(sourceIndex));
    }

    // ---- plans: which samples go into which batch ----

    sealed record Item(int Source, long Index, long Draw);

    sealed record Plan(long Sequence, long BatchIndex, SourceGroup? Group, Item[] Items, bool Replace);

    sealed record SourceGroup(string Key, int[] Members, double[] Weights, double Weight);

    IEnumerable<Plan> MixturePlans(long start)
    {
        var orders = sources.Select((s, i) => new SampleOrder(s.Corpus.Count, Mix.Hash(options.Seed, 0x0DE5, i), options.Rank, options.WorldSize)).ToArray();
        var cursors = new long[sources.Length];
        double totalWeight = groups.Sum(g => g.Weight);
        for (long batch = 0, sequence = 0; ; batch++)
        {
            // Every rank makes the same choices (the plan's seed has no rank in it), so the shards stay disjoint.
            var rng = Mix.Random(options.Seed, 0xBA7C, batch);
            var group = groups[Choose(rng, groups.Select(g => g.Weight).ToArray(), totalWeight)];
            var members = new int[options.BatchSize];
            for (int slot = 0; slot < members.Length; slot++)
                members[slot] = group.Members.Length == 1 ? group.Members[0] : group.Members[Choose(rng, group.Weights, group.Weights.Sum())];
            if (batch < start)
            {
                foreach (int m in members) cursors[m]++;
                continue;
            }
            var items = new Item[members.Length];
            for (int slot = 0; slot < members.Length; slot++)
            {
                int m = members[slot];
                long draw = cursors[m]++;
                items[slot] = new Item(m, orders[m].At(draw), draw);
            }
            yield return new Plan(sequence++, batch, group, items, Replace: true);
        }
    }

    IEnumerable<Plan> PassPlans(int sourceIndex)
    {
        long count = sources[sourceIndex].Corpus.Count, sequence = 0;
        var shard = new List<Item>();
        for (long i = options.Rank; i < count; i += options.WorldSize)
        {
            shard.Add(new Item(sourceIndex, i, shard.Count));
            if (shard.Count == options.BatchSize)
            {
                yield return new Plan(sequence, sequence, null, [.. shard], Replace: false);
                sequence++;
                shard.Clear();
            }
        }
        if (shard.Count > 0) yield return new Plan(sequence, sequence, null, [.. shard], Replace: false);
    }

    static int Choose(Random rng, double[] weights, double total)
    {
        double u = rng.NextDouble() * total;
        for (int i = 0; i < weights.Length - 1; i++)
        {
            u -= weights[i];
            if (u < 0) return i;
        }
        return weights.Length - 1;
    }

    // ---- groups: which sources may share a batch ----

    SourceGroup[] GroupSources()
    {
        var keys = new string[sources.Length];
        for (int i = 0; i < sources.Length; i++) keys[i] = ProbeKey(i);
        return [.. Enumerable.Range(0, sources.Length).GroupBy(i => keys[i]).Select(g =>
        {
            int[] members = [.. g];
            double[] weights = [.. members.Select(m => sources[m].Weight)];
            return new SourceGroup(g.Key, members, weights, weights.Sum());
        })];
    }

    // The shapes a source's samples have after its pipeline, from the first sample that loads.
    string ProbeKey(int sourceIndex)
    {
        var source = sources[sourceIndex];
        Exception? last = null;
        for (long index = 0; index < Math.Min(source.Corpus.Count, options.MaxBadInARow); index++)
        {
            using var scope = NewDisposeScope();
            try
            {
                var views = Views(sourceIndex, index, Mix.Random(options.Seed, 0x9B0BE, sourceIndex));
                return ShapeKey(views);
            }
            catch (Exception e) when (IsBadSample(e))
            {
                last = e;
                if (options.Strict) throw;
            }
        }
        throw new InvalidDataException($"corpus '{source.Corpus.Name}': no sample among the first {options.MaxBadInARow} could be read; " +
            $"the last error: {last?.Message}", last);
    }

    static string ShapeKey(IReadOnlyList<Sample> views) => string.Join(" | ", views.Select(v =>
        $"{v.Meta.Dimensionality} image [{string.Join(",", v.Image.shape)}]"
        + (v.Target is null ? "" : $" target [{string.Join(",", v.Target.shape)}] {v.Target.dtype}")
        + (v.Coordinates is null ? "" : " coordinates")));

    // ---- building one batch ----

    Sample[] Views(int sourceIndex, long index, Random rng)
    {
        var source = sources[sourceIndex];
        var sample = source.Corpus.Get(index);
        if (source.TrackCoordinates) sample = CoordinateGrid.Attach(sample);
        var views = new Sample[source.ViewCount];
        for (int v = 0; v < views.Length; v++)
        {
            // Each view draws its own augmentation from the sample's stream.
            var viewRng = views.Length == 1 ? rng : new Random(rng.Next());
            views[v] = source.TransformOf(v) is { } transform ? transform.Apply(sample, viewRng) : sample;
        }
        return views;
    }

    Batch? Build(Plan plan)
    {
        using var scope = NewDisposeScope();
        var samples = new List<Sample[]>(plan.Items.Length);
        var metas = new List<SampleMeta>(plan.Items.Length);
        for (int slot = 0; slot < plan.Items.Length; slot++)
        {
            var item = plan.Items[slot];
            SampleOrder? order = null;
            long index = item.Index;
            for (int attempt = 0; ; attempt++)
            {
                using var sampleScope = NewDisposeScope();
                try
                {
                    var views = Views(item.Source, index, Mix.Random(options.Seed, plan.BatchIndex, slot, options.Rank * 65_537L + item.Source, attempt));
                    if (plan.Group is { } group && ShapeKey(views) != group.Key)
                        throw new InvalidDataException($"{views[0].Meta}: its shapes after the pipeline, {ShapeKey(views)}, differ from its corpus's, " +
                            $"{group.Key}; add a crop, pad or resize so every sample agrees");
                    var kept = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
                    foreach (var view in views)
                        foreach (var tensor in (Tensor?[])[view.Image, view.Target, view.Coordinates])
                            if (tensor is not null && kept.Add(tensor)) sampleScope.MoveToOuter(tensor);
                    samples.Add(views);
                    metas.Add(views[0].Meta);
                    break;
                }
                catch (Exception e) when (IsBadSample(e))
                {
                    string corpus = sources[item.Source].Corpus.Name;
                    if (options.Strict) throw new InvalidDataException($"corpus '{corpus}', sample {index}: {e.Message} (strict mode)", e);
                    skipped.AddOrUpdate(corpus, 1, (_, n) => n + 1);
                    if (skipReasons.Count < 20) skipReasons.Enqueue($"{corpus}[{index}]: {e.Message}");
                    if (!plan.Replace) break;  // a pass drops the sample
                    if (attempt + 1 >= options.MaxBadInARow)
                        throw new InvalidDataException($"corpus '{corpus}': {options.MaxBadInARow} bad samples in a row; the last: {e.Message}", e);
                    order ??= new SampleOrder(sources[item.Source].Corpus.Count, Mix.Hash(options.Seed, 0x0DE5, item.Source), options.Rank, options.WorldSize);
                    index = order.Replacement(item.Draw, Mix.Random(options.Seed, plan.BatchIndex, slot, 0x5EED, attempt));
                }
            }
        }
        if (samples.Count == 0) return null;
        var batchViews = new BatchView[samples[0].Length];
        for (int v = 0; v < batchViews.Length; v++)
        {
            var column = samples.Select(s => s[v]).ToArray();
            var images = stack(column.Select(s => s.Image));
            var targets = Collate(column, s => s.Target, "targets");
            var coordinates = Collate(column, s => s.Coordinates, "coordinates");
            scope.MoveToOuter(images);
            if (targets is not null) scope.MoveToOuter(targets);
            if (coordinates is not null) scope.MoveToOuter(coordinates);
            batchViews[v] = new BatchView(images, targets, coordinates);
        }
        return new Batch(plan.BatchIndex, batchViews, metas);
    }

    static Tensor? Collate(Sample[] column, Func<Sample, Tensor?> pick, string what)
    {
        int present = column.Count(s => pick(s) is not null);
        if (present == 0) return null;
        if (present != column.Length)
            throw new InvalidDataException($"{column.First(s => pick(s) is null).Meta}: has no {what} while others in its batch do");
        return stack(column.Select(s => pick(s)!));
    }

    /// <summary>What a bad file or sample raises; anything else is a bug and stops the run.</summary>
    static bool IsBadSample(Exception e) => e is InvalidDataException or IOException or NotSupportedException or UnauthorizedAccessException;

    // ---- running plans on workers, delivering batches in order ----

    IEnumerable<Batch> Execute(IEnumerable<Plan> plans)
    {
        if (options.Workers == 0)
        {
            foreach (var plan in plans)
                if (Build(plan) is { } batch) yield return batch;
            yield break;
        }
        using var pipeline = new Pipeline(this, plans);
        pipeline.Start();
        try
        {
            for (long next = 0; ; next++)
            {
                if (!pipeline.TryTake(next, out var result)) yield break;
                if (result.Error is not null) ExceptionDispatchInfo.Throw(result.Error);
                if (result.Batch is not null) yield return result.Batch;
            }
        }
        finally
        {
            pipeline.Stop();
        }
    }

    /// <summary>
    /// One run of plans on worker threads: a thread feeds the plans to a bounded queue, the workers build them, and
    /// the consumer takes the batches in plan order. A slot is taken for each plan queued and given back as its
    /// batch is taken, so at most Workers + Prefetch batches are planned ahead of the consumer.
    /// </summary>
    sealed class Pipeline : IDisposable
    {
        readonly DataLoader loader;
        readonly IEnumerable<Plan> plans;
        readonly CancellationTokenSource cancel = new();
        readonly SemaphoreSlim slots;
        readonly BlockingCollection<Plan> queue;
        readonly Dictionary<long, (Batch? Batch, Exception? Error)> results = [];
        readonly object gate = new();
        long planned = long.MaxValue;  // plans queued, once the producer has finished
        Thread? producer;
        Thread[] workers = [];

        public Pipeline(DataLoader loader, IEnumerable<Plan> plans)
        {
            (this.loader, this.plans) = (loader, plans);
            slots = new SemaphoreSlim(loader.options.Workers + loader.options.Prefetch);
            queue = new BlockingCollection<Plan>(boundedCapacity: loader.options.Workers + loader.options.Prefetch);
        }

        public void Start()
        {
            producer = new Thread(Produce) { IsBackground = true, Name = "loader-plan" };
            workers = [.. Enumerable.Range(0, loader.options.Workers).Select(w => new Thread(Work) { IsBackground = true, Name = $"loader-{w}" })];
            producer.Start();
            foreach (var worker in workers) worker.Start();
        }

        /// <summary>Waits for the batch of plan <paramref name="sequence"/>; false when there is none (the plans ran out).</summary>
        public bool TryTake(long sequence, out (Batch? Batch, Exception? Error) result)
        {
            lock (gate)
            {
                while (!results.ContainsKey(sequence) && sequence < planned) Monitor.Wait(gate);
                if (!results.Remove(sequence, out result)) return false;
            }
            slots.Release();
            return true;
        }

        void Produce()
        {
            long count = 0;
            try
            {
                foreach (var plan in plans)
                {
                    slots.Wait(cancel.Token);
                    queue.Add(plan, cancel.Token);
                    count++;
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception e)
            {
                // The consumer rethrows it in its place in the sequence.
                lock (gate) results[count] = (null, e);
                count++;
            }
            finally
            {
                queue.CompleteAdding();
                lock (gate)
                {
                    planned = count;
                    Monitor.PulseAll(gate);
                }
            }
        }

        void Work()
        {
            try
            {
                foreach (var plan in queue.GetConsumingEnumerable(cancel.Token))
                {
                    (Batch?, Exception?) result;
                    try
                    {
                        result = (loader.Build(plan), null);
                    }
                    catch (Exception e)
                    {
                        result = (null, e);
                    }
                    lock (gate)
                    {
                        results[plan.Sequence] = result;
                        Monitor.PulseAll(gate);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        /// <summary>Stops the threads and frees the batches built but not taken (the consumer broke off early).</summary>
        public void Stop()
        {
            cancel.Cancel();
            producer!.Join();
            foreach (var worker in workers) worker.Join();
            lock (gate)
                foreach (var (_, (batch, _)) in results) batch?.Dispose();
            queue.Dispose();
        }

        public void Dispose()
        {
            slots.Dispose();
            cancel.Dispose();
        }
    }
}
