using System.Diagnostics;

namespace Medformer.Tracking;

/// <summary>
/// Sends a run's entries to a tracking server from a background thread, so logging never waits on the network:
/// a call appends its entries to the spool file and a queue and returns. The thread creates the run, then sends the
/// queue in order as log-batch calls (up to 1000 metrics, 100 params and 100 tags each), artifact uploads and the
/// final update. A call that fails with no answer, 429 or 5xx is retried with exponential back-off, and meanwhile
/// the queue grows; an error the server means (4xx) puts those entries aside as rejected. At the end it waits up to
/// <see cref="RestOptions.FlushTimeout"/>; whatever is left stays in the spool file.
/// </summary>
sealed class RestRunSender : IRunSink
{
    const int EagerBatch = 500;

    readonly RestStore rest;
    readonly RunSpool spool;
    readonly RunStart start;
    readonly object gate = new();
    readonly List<SpoolEntry> queue;
    readonly List<string> errors = [];  // what the server refused
    string? lastFailure;                  // the last error of a send that will be retried
    readonly Thread thread;
    long seq;
    RunInfo? run;
    bool ending, stopped, createRefused;
    int rejected;
    DateTime deadline = DateTime.MaxValue;

    readonly TrackingFaults faults;

    public RestRunSender(RestStore rest, RunSpool spool, RunStart start, TrackingFaults faults, RunInfo? created = null, IEnumerable<SpoolEntry>? unsent = null,
        long lastSeq = 0)
    {
        (this.rest, this.spool, this.start, this.faults, run, seq) = (rest, spool, start, faults, created, lastSeq);
        queue = [.. unsent ?? []];
        thread = new Thread(Loop) { IsBackground = true, Name = "mlflow-sender" };
        thread.Start();
    }

    public string Location => rest.Location;

    public string? RunId
    {
        get { lock (gate) return run?.RunId; }
    }

    public void Log(IReadOnlyList<Metric> metrics, IReadOnlyList<KeyValuePair<string, string>> parameters, IReadOnlyList<KeyValuePair<string, string>> tags)
    {
        lock (gate)
        {
            var entries = new List<SpoolEntry>();
            entries.AddRange(parameters.Select(p => new SpoolEntry(++seq, Param: p)));
            entries.AddRange(tags.Select(t => new SpoolEntry(++seq, Tag: t)));
            entries.AddRange(metrics.Select(m => new SpoolEntry(++seq, Metric: m)));
            Enqueue(entries);
        }
    }

    public void LogArtifact(string localPath, string? artifactPath, bool folder)
    {
        lock (gate) Enqueue([new SpoolEntry(++seq, Artifact: new ArtifactUpload(Path.GetFullPath(localPath), artifactPath, folder))]);
    }

    void Enqueue(List<SpoolEntry> entries)
    {
        if (ending) throw new InvalidOperationException("the run has ended");
        // Queued first: a spool that cannot be written (a full disk) costs the journal, not the entries.
        queue.AddRange(entries);
        Monitor.PulseAll(gate);
        Journal("write the spool file " + spool.Path, () => spool.Append(entries.Select(e => e.ToJson())));
    }

    public TrackingOutcome End(RunStatus status, long endTime)
    {
        lock (gate) Enqueue([new SpoolEntry(++seq, End: new RunEnd(status, endTime))]);
        return Drain();
    }

    /// <summary>Sends what is queued, waiting up to the flush timeout, and stops: the outcome says what is left.</summary>
    public TrackingOutcome Drain()
    {
        lock (gate)
        {
            ending = true;
            deadline = DateTime.UtcNow + rest.Options.FlushTimeout;
            Monitor.PulseAll(gate);
        }
        thread.Join();
        lock (gate)
        {
            int unsent = queue.Count + rejected;
            if (unsent == 0)
            {
                spool.Delete();
                return new TrackingOutcome(rest.Location, run?.RunId, 0, null, []);
            }
            spool.Dispose();
            return new TrackingOutcome(rest.Location, run?.RunId, unsent, spool.Path,
                [.. errors, .. queue.Count > 0 && lastFailure is not null ? [lastFailure] : Array.Empty<string>()]);
        }
    }

    void Loop()
    {
        var wait = rest.Options.FirstBackoff;
        var sinceSend = Stopwatch.StartNew();
        while (NextBatch(sinceSend) is { } batch)
        {
            try
            {
                if (RunId is null) CreateRun();
                Send(batch);
                MarkSent(batch);
                wait = rest.Options.FirstBackoff;
                sinceSend.Restart();
            }
            catch (MlflowRestException e) when (e.Retryable)
            {
                BackOff(e.Message, wait);
                wait = rest.Options.NextBackoff(wait);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The server's refusal (4xx), or a local fault (an artifact that cannot be read): retrying will not
                // help, and an exception on this thread would end the training process.
                if (!SetAside(batch, e.Message)) return;
            }
        }
    }

    /// <summary>
    /// Waits until a batch is due (enough entries, an artifact or the end, the send interval passed, or the run
    /// ending) and takes it from the head of the queue; null when the sender is done.
    /// </summary>
    List<SpoolEntry>? NextBatch(Stopwatch sinceSend)
    {
        lock (gate)
        {
            while (true)
            {
                if (queue.Count == 0 && ending || createRefused || ending && DateTime.UtcNow >= deadline) return null;
                if (queue.Count > 0 && (ending || queue.Count >= EagerBatch || !queue[0].IsData || sinceSend.Elapsed >= rest.Options.SendInterval)) break;
                var timeout = queue.Count > 0 ? rest.Options.SendInterval - sinceSend.Elapsed : rest.Options.SendInterval;
                Monitor.Wait(gate, timeout > TimeSpan.Zero ? timeout : TimeSpan.FromMilliseconds(1));
            }
            return TakeBatch();
        }
    }

    /// <summary>Drops a sent batch from the queue and records in the spool file that it went.</summary>
    void MarkSent(List<SpoolEntry> batch)
    {
        lock (gate)
        {
            queue.RemoveRange(0, batch.Count);
            Journal("write the spool file " + spool.Path, () => spool.Done(batch[^1].Seq));
        }
    }

    /// <summary>Waits <paramref name="wait"/> before the next try, or less when the run ends meanwhile.</summary>
    void BackOff(string failure, TimeSpan wait)
    {
        lock (gate)
        {
            lastFailure = failure;
            // New entries do not cut the back-off short; the run's end does, for one more try at once.
            bool wasEnding = ending;
            var until = DateTime.UtcNow + wait;
            while (true)
            {
                if (ending && deadline < until) until = deadline;
                var left = until - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || ending && !wasEnding) break;
                Monitor.Wait(gate, left);
            }
        }
    }

    /// <summary>Puts aside a batch that cannot be sent as rejected; false when there is no run to log to, which stops the sender.</summary>
    bool SetAside(List<SpoolEntry> batch, string error)
    {
        lock (gate)
        {
            errors.Add(error);
            if (RunId is null)
            {
                createRefused = true;  // no run to log to: everything stays in the spool file
                return false;
            }
            queue.RemoveRange(0, batch.Count);
            rejected += batch.Count;
            Journal("write the spool file " + spool.Path, () => spool.Rejected(batch[0].Seq, batch[^1].Seq, error));
            return true;
        }
    }

    /// <summary>From the head of the queue: an artifact or the end alone, or a run of params, tags and metrics within MLflow's limits.</summary>
    List<SpoolEntry> TakeBatch()
    {
        if (!queue[0].IsData) return [queue[0]];
        int metrics = 0, parameters = 0, tags = 0, count = 0;
        foreach (var entry in queue)
        {
            if (!entry.IsData) break;
            if (entry.Metric is not null && ++metrics > RestStore.MaxMetricsPerBatch) break;
            if (entry.Param is not null && ++parameters > RestStore.MaxParamsPerBatch) break;
            if (entry.Tag is not null && ++tags > RestStore.MaxTagsPerBatch) break;
            if (++count == RestStore.MaxMetricsPerBatch) break;  // MLflow's 1000 entities per call in all
        }
        return queue.GetRange(0, count);
    }

    void CreateRun()
    {
        string experimentId = rest.GetOrCreateExperiment(start.Experiment);
        var created = rest.CreateRun(experimentId, start.RunName, start.User, start.StartTime, start.Tags);
        lock (gate)
        {
            run = created;
            Journal("write the spool file " + spool.Path, () => spool.Created(created));
        }
    }

    /// <summary>A spool write; its failure is reported once through the run's faults and never stops the sender.</summary>
    void Journal(string what, Action write) => faults.Run(what, write);

    void Send(List<SpoolEntry> batch)
    {
        string runId = run!.RunId;
        var first = batch[0];
        if (first.End is { } end)
        {
            rest.UpdateRun(runId, end.Status, end.EndTime);
            return;
        }
        if (first.Artifact is { } artifact)
        {
            Upload(artifact);
            return;
        }
        rest.LogBatch(runId, [.. batch.Where(e => e.Metric is not null).Select(e => e.Metric!)],
            [.. batch.Where(e => e.Param is not null).Select(e => e.Param!.Value)], [.. batch.Where(e => e.Tag is not null).Select(e => e.Tag!.Value)]);
    }

    void Upload(ArtifactUpload artifact)
    {
        string prefix = string.IsNullOrEmpty(artifact.ArtifactPath) ? "" : artifact.ArtifactPath.TrimEnd('/') + "/";
        if (!artifact.Folder)
        {
            if (!File.Exists(artifact.LocalPath)) throw new MlflowRestException(400, "MISSING_FILE", $"artifact {artifact.LocalPath}: the file is gone");
            rest.PutArtifact(run!.ArtifactUri, prefix + Path.GetFileName(artifact.LocalPath), artifact.LocalPath);
            return;
        }
        if (!Directory.Exists(artifact.LocalPath)) throw new MlflowRestException(400, "MISSING_FILE", $"artifacts {artifact.LocalPath}: the folder is gone");
        foreach (string file in Directory.EnumerateFiles(artifact.LocalPath, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            rest.PutArtifact(run!.ArtifactUri, prefix + Path.GetRelativePath(artifact.LocalPath, file).Replace(Path.DirectorySeparatorChar, '/'), file);
    }

    public void Dispose()
    {
        lock (gate)
        {
            if (stopped) return;
            stopped = true;
        }
        if (thread.IsAlive) Drain();
        rest.Dispose();
    }
}
