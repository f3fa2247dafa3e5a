using System.Globalization;
using Medformer.Runtime;
using Microsoft.Data.Sqlite;

namespace Medformer.Tracking;

/// <summary>
/// MLflow's SQL store in a local SQLite database (<c>sqlite:///mlflow.db</c>, MLflow's default since 3.7), which
/// <c>mlflow ui</c>, <c>mlflow server</c> and MLflow's <c>SqlAlchemyStore</c> open as they are.
/// <para>
/// A new database gets MLflow's whole schema at one alembic revision (<see cref="SchemaRevision"/>, recorded in
/// <c>alembic_version</c>), exactly as MLflow's migrations build it (<c>MlflowSchema.sql</c>), and experiment 0,
/// "Default". MLflow opens a database only at the head revision of its own migrations: the MLflow of that revision
/// reads ours as it is, a newer one after <c>mlflow db upgrade</c>. A database MLflow made (or upgraded) is written
/// as it is: we touch only the tracking tables and columns every revision since MLflow 2.x has.
/// </para>
/// <para>
/// Rows are written as MLflow's <c>SqlAlchemyStore</c> writes them: runs with status names (<c>RUNNING</c>), every
/// metric point in <c>metrics</c> (NaN as 0 with <c>is_nan</c>, ±∞ as ±max double, a repeated identical point
/// once) and each metric's latest point in <c>latest_metrics</c> (the largest step, then timestamp, then value).
/// Artifacts are files under <c>mlruns/</c> beside the database, as MLflow's default artifact root is.
/// </para>
/// <para>
/// Several processes write one database at once (data-parallel ranks, parallel runs): the database is in WAL mode
/// (readers never block the writer), each write is one <c>BEGIN IMMEDIATE</c> transaction, and a writer waits up to
/// 30 s for another's lock, so nothing is lost; a lock held longer is an error, which a run reports once and counts.
/// </para>
/// </summary>
public sealed class SqliteStore : ITrackingStore
{
    /// <summary>The alembic revision of the schema we create: the head of MLflow's migrations we test against.</summary>
    public const string SchemaRevision = "7d34483879f0";

    /// <summary>The MLflow source the schema comes from (its version string and the date of that source).</summary>
    public const string SchemaMlflowVersion = "3.11.2.dev0 (master of 2026-04-29)";

    const int BusySeconds = 30;
    readonly string connectionString;

    public SqliteStore(string path)
    {
        DatabasePath = Path.GetFullPath(path);
        if (Directory.Exists(DatabasePath)) throw new ArgumentException($"tracking database {DatabasePath}: a folder, not a file");
        Directory.CreateDirectory(Path.GetDirectoryName(DatabasePath)!);
        ArtifactRoot = Path.Combine(Path.GetDirectoryName(DatabasePath)!, "mlruns");
        connectionString = new SqliteConnectionStringBuilder { DataSource = DatabasePath, DefaultTimeout = BusySeconds, Pooling = true }.ToString();
        Guard(Initialize);
    }

    /// <summary>The database file (absolute).</summary>
    public string DatabasePath { get; }

    /// <summary>Where new experiments keep their artifacts: <c>mlruns/</c> beside the database.</summary>
    public string ArtifactRoot { get; }

    public string Location => DatabasePath;

    /// <summary>The URI MLflow is given for this database.</summary>
    public string Uri => "sqlite:///" + DatabasePath;

    /// <summary>The schema revision in the database (ours, or what MLflow made or upgraded it to).</summary>
    public string? Revision { get; private set; }

    static string SchemaSql()
    {
        using var stream = typeof(SqliteStore).Assembly.GetManifestResourceStream("Medformer.Tracking.MlflowSchema.sql")
            ?? throw new InvalidOperationException("the MLflow schema is not embedded in Medformer.Tracking");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    void Initialize()
    {
        using var connection = Open();
        // WAL lets `mlflow ui` read while runs write; set before the first transaction (it is kept in the file).
        if (Scalar(connection, null, "SELECT count(*) FROM sqlite_master") is 0L)
            Execute(connection, null, "PRAGMA journal_mode=WAL");
        using var transaction = connection.BeginTransaction(deferred: false);
        bool hasExperiments = Scalar(connection, transaction, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'experiments'") is 1L;
        if (!hasExperiments)
        {
            if (Scalar(connection, transaction, "SELECT count(*) FROM sqlite_master WHERE type = 'table'") is not 0L)
                throw new InvalidDataException($"{DatabasePath}: an SQLite database, but not MLflow's (it has tables and no 'experiments')");
            Execute(connection, transaction, SchemaSql());
            long now = FileStore.Now();
            // As MLflow's store: experiment 0, "Default", its artifacts under the artifact root.
            Execute(connection, transaction,
                "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (0, " +
                    "$name, $location, 'active', $now, $now)",
                ("$name", FileStore.DefaultExperimentName), ("$location", Path.Combine(ArtifactRoot, "0")), ("$now", now));
        }
        Revision = Scalar(connection, transaction, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'") is 1L
            ? Scalar(connection, transaction, "SELECT version_num FROM alembic_version") as string : null;
        transaction.Commit();
    }

    // ---- experiments ----

    public IReadOnlyList<Experiment> ListExperiments() => Guard(() =>
    {
        using var connection = Open();
        return Query(connection, null,
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments " +
                "ORDER BY creation_time, experiment_id",
            ReadExperiment);
    });

    public Experiment GetOrCreateExperiment(string name)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("experiment name is empty");
        return Guard(() =>
        {
            using var connection = Open();
            using var transaction = connection.BeginTransaction(deferred: false);
            var found = Query(connection, transaction,
                "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments WHERE name = $name",
                ReadExperiment, ("$name", name));
            if (found.Count > 0)
            {
                // MLflow keeps names unique across deleted experiments too, and refuses to reuse one.
                if (found[0].LifecycleStage != "active")
                    throw new ArgumentException($"experiment '{name}' is deleted in {DatabasePath}; restore it in MLflow or choose another name");
                return found[0];
            }
            long now = FileStore.Now();
            Execute(connection, transaction,
                "INSERT INTO experiments (name, lifecycle_stage, creation_time, last_update_time) VALUES ($name, 'active', $now, $now)",
                ("$name", name), ("$now", now));
            long id = (long)Scalar(connection, transaction, "SELECT last_insert_rowid()")!;
            string location = Path.Combine(ArtifactRoot, id.ToString(CultureInfo.InvariantCulture));
            Execute(connection, transaction, "UPDATE experiments SET artifact_location = $location WHERE experiment_id = $id", ("$location", location), ("$id",
                id));
            transaction.Commit();
            return new Experiment(id.ToString(CultureInfo.InvariantCulture), name, location, "active", now, now);
        });
    }

    static Experiment ReadExperiment(SqliteDataReader r) => new(r.GetInt64(0).ToString(CultureInfo.InvariantCulture), r.GetString(1),
        r.IsDBNull(2) ? "" : r.GetString(2), r.IsDBNull(3) ? "active" : r.GetString(3), NullableLong(r, 4), NullableLong(r, 5));

    // ---- runs ----

    public RunInfo CreateRun(string experimentId, string runName, string userId, long startTime, IReadOnlyDictionary<string, string>? tags = null,
        string? runId = null)
    {
        long experiment = ExperimentNumber(experimentId);
        if (runId is not null && (runId.Length is 0 or > 32 || runId.Any(c => !char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_'))))
            throw new ArgumentException($"run id '{runId}': MLflow's SQL store keeps run ids of up to 32 letters, digits, '-' and '_'");
        var all = new Dictionary<string, string>(tags ?? new Dictionary<string, string>()) { [MlflowTags.RunName] = runName };
        foreach (var (key, value) in all)
        {
            TrackingKeys.Validate(key, "tag");
            TrackingKeys.ValidateValue(key, value, "tag");
        }
        string id = runId ?? Guid.NewGuid().ToString("N");
        return Guard(() =>
        {
            using var connection = Open();
            using var transaction = connection.BeginTransaction(deferred: false);
            var location = Query(connection, transaction, "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = $id",
                r => (Location: r.IsDBNull(0) ? Path.Combine(ArtifactRoot, experimentId) : r.GetString(0), Stage: r.IsDBNull(1) ? "active" : r.GetString(1)),
                ("$id", experiment));
            if (location.Count == 0) throw new ArgumentException($"experiment {experimentId}: not in {DatabasePath}");
            if (location[0].Stage != "active") throw new ArgumentException($"experiment {experimentId} is deleted in {DatabasePath}");
            if (Scalar(connection, transaction, "SELECT count(*) FROM runs WHERE run_uuid = $id", ("$id", id)) is not 0L)
                throw new ArgumentException($"run {id}: already in {DatabasePath}");
            string artifactUri = AppendPath(location[0].Location, id, "artifacts");
            // The columns and values MLflow's create_run gives a new run.
            Execute(connection, transaction,
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, " +
                    "lifecycle_stage, artifact_uri, experiment_id, deleted_time) " +
                "VALUES ($id, $name, 'UNKNOWN', '', '', $user, 'RUNNING', $start, NULL, '', 'active', $artifacts, $experiment, NULL)",
                ("$id", id), ("$name", runName), ("$user", userId), ("$start", startTime), ("$artifacts", artifactUri), ("$experiment", experiment));
            WriteTags(connection, transaction, id, all);
            transaction.Commit();
            return new RunInfo(id, experimentId, runName, userId, RunStatus.Running, startTime, null, artifactUri, "active");
        });
    }

    public bool HasRun(string runId) => Guard(() =>
    {
        using var connection = Open();
        return Scalar(connection, null, "SELECT count(*) FROM runs WHERE run_uuid = $id", ("$id", runId)) is not 0L;
    });

    public void UpdateRun(string runId, RunStatus status, long? endTime) => Guard(() =>
    {
        using var connection = Open();
        int changed = Execute(connection, null, "UPDATE runs SET status = $status, end_time = $end WHERE run_uuid = $id",
            ("$status", MlflowTags.StatusName(status)), ("$end", endTime), ("$id", runId));
        if (changed == 0) throw new ArgumentException($"run {runId}: not in {DatabasePath}");
    });

    /// <summary>
    /// Writes params (refusing a changed value, as MLflow does), metric points and tags in one transaction: keys are
    /// checked first, and a refused param writes nothing.
    /// </summary>
    public void LogBatch(string runId, IReadOnlyList<Metric> metrics, IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> tags)
    {
        TrackingKeys.ValidateBatch(metrics, parameters, tags);
        Guard(() =>
        {
            using var connection = Open();
            using var transaction = connection.BeginTransaction(deferred: false);
            var stage = Query(connection, transaction, "SELECT lifecycle_stage FROM runs WHERE run_uuid = $id",
                r => r.IsDBNull(0) ? "active" : r.GetString(0), ("$id", runId));
            if (stage.Count == 0) throw new ArgumentException($"run {runId}: not in {DatabasePath}");
            if (stage[0] != "active") throw new ArgumentException($"run {runId} is deleted in {DatabasePath}");
            foreach (var (key, value) in parameters)
            {
                var old = Query(connection, transaction, "SELECT value FROM params WHERE run_uuid = $id AND key = $key", r => r.GetString(0), ("$id",
                    runId), ("$key", key));
                if (old.Count > 0)
                {
                    if (old[0] != value)
                        throw new ArgumentException($"param '{key}' was already logged with value '{old[0]}' for run {runId}; MLflow " +
                            $"does not allow changing it to '{value}'");
                    continue;
                }
                Execute(connection, transaction, "INSERT INTO params (key, value, run_uuid) VALUES ($key, $value, $id)", ("$key", key), ("$value",
                    value), ("$id", runId));
            }
            if (metrics.Count > 0) WriteMetrics(connection, transaction, runId, metrics);
            WriteTags(connection, transaction, runId, tags);
            transaction.Commit();
        });
    }

    static void WriteMetrics(SqliteConnection connection, SqliteTransaction transaction, string runId, IReadOnlyList<Metric> metrics)
    {
        // A point identical to one already logged is kept once (MLflow's primary key covers the whole point).
        using var point = Command(connection, transaction,
            "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES ($key, $value, $time, $id, $step, $nan)");
        // The latest point by (step, timestamp, value), as MLflow's _update_latest_metrics_if_necessary keeps it.
        using var latest = Command(connection, transaction,
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES ($key, $value, $time, $step, $nan, $id) " +
            "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan "
                +
            "WHERE (excluded.step, excluded.timestamp, excluded.value) > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)");
        foreach (var command in new[] { point, latest })
            foreach (string name in new[] { "$key", "$value", "$time", "$id", "$step", "$nan" }) command.Parameters.Add(new SqliteParameter(name, null));
        foreach (var m in metrics)
        {
            var (isNan, value) = Sanitize(m.Value);
            foreach (var command in new[] { point, latest })
            {
                command.Parameters["$key"].Value = m.Key;
                command.Parameters["$value"].Value = value;
                command.Parameters["$time"].Value = m.Timestamp;
                command.Parameters["$id"].Value = runId;
                command.Parameters["$step"].Value = m.Step;
                command.Parameters["$nan"].Value = isNan ? 1L : 0L;
                command.ExecuteNonQuery();
            }
        }
    }

    /// <summary>MLflow's sanitize_metric_value: SQL has no NaN or infinity, so NaN is 0 with is_nan set and ±∞ is ±max double.</summary>
    static (bool IsNan, double Value) Sanitize(double value) =>
        double.IsNaN(value) ? (true, 0.0) : double.IsInfinity(value) ? (false, value > 0 ? double.MaxValue : double.MinValue) : (false, value);

    void WriteTags(SqliteConnection connection, SqliteTransaction transaction, string runId, IReadOnlyDictionary<string, string> tags)
    {
        foreach (var (key, value) in tags)
        {
            Execute(connection, transaction,
                "INSERT INTO tags (key, value, run_uuid) VALUES ($key, $value, $id) ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                ("$key", key), ("$value", value), ("$id", runId));
            // MLflow keeps the run's name in the runs table too, and set_tag of mlflow.runName renames the run.
            if (key == MlflowTags.RunName)
                Execute(connection, transaction, "UPDATE runs SET name = $value WHERE run_uuid = $id", ("$value", value), ("$id", runId));
        }
    }

    /// <summary>Copies a file into the run's artifacts, under <paramref name="artifactPath"/> (mlflow.log_artifact).</summary>
    public void LogArtifact(string runId, string localFile, string? artifactPath = null) =>
        ArtifactFiles.LogFile(ArtifactDirectory(runId), localFile, artifactPath);

    /// <summary>Copies a folder's contents into the run's artifacts, under <paramref name="artifactPath"/> (mlflow.log_artifacts).</summary>
    public void LogArtifacts(string runId, string localDirectory, string? artifactPath = null) =>
        ArtifactFiles.LogFolder(ArtifactDirectory(runId), localDirectory, artifactPath);

    /// <summary>The run's artifact folder: its artifact_uri, a local path or file: URI (a remote one cannot be written here).</summary>
    public string ArtifactDirectory(string runId)
    {
        string uri = GetRunInfo(runId).ArtifactUri;
        if (uri.StartsWith("file:", StringComparison.OrdinalIgnoreCase)) return new Uri(uri).LocalPath;
        if (Path.IsPathRooted(uri)) return uri;
        throw new IOException($"run {runId}: its artifacts are at {uri}, not a local folder");
    }

    public IReadOnlyList<RunInfo> ListRuns(string experimentId)
    {
        long experiment = ExperimentNumber(experimentId);
        return Guard(() =>
        {
            using var connection = Open();
            if (Scalar(connection, null, "SELECT count(*) FROM experiments WHERE experiment_id = $id", ("$id", experiment)) is 0L)
                throw new ArgumentException($"experiment {experimentId}: not in {DatabasePath}");
            return Query(connection, null, RunColumns + " WHERE experiment_id = $id AND lifecycle_stage = 'active' ORDER BY start_time DESC",
                ReadRunInfo, ("$id", experiment));
        });
    }

    public RunRecord GetRun(string runId) => Guard(() =>
    {
        using var connection = Open();
        var info = RunInfoOf(connection, runId);
        var parameters = Query(connection, null, "SELECT key, value FROM params WHERE run_uuid = $id ORDER BY key", r => KeyValuePair.Create(r.GetString(0),
            r.GetString(1)), ("$id", runId));
        var tags = Query(connection, null, "SELECT key, value FROM tags WHERE run_uuid = $id ORDER BY key", r => KeyValuePair.Create(r.GetString(0),
            r.IsDBNull(1) ? "" : r.GetString(1)), ("$id", runId));
        var metrics = Query(connection, null, "SELECT key, value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid = $id ORDER BY key",
            ReadMetric, ("$id", runId));
        return new RunRecord(info, parameters.ToDictionary(StringComparer.Ordinal), tags.ToDictionary(StringComparer.Ordinal),
            metrics.ToDictionary(m => m.Key, StringComparer.Ordinal));
    });

    public IReadOnlyList<Metric> GetMetricHistory(string runId, string key)
    {
        TrackingKeys.Validate(key, "metric");
        return Guard(() =>
        {
            using var connection = Open();
            RunInfoOf(connection, runId);
            // rowid order is the order the points were written.
            return Query(connection, null, "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = $id AND key = $key ORDER BY rowid",
                ReadMetric,
                ("$id", runId), ("$key", key));
        });
    }

    RunInfo GetRunInfo(string runId) => Guard(() =>
    {
        using var connection = Open();
        return RunInfoOf(connection, runId);
    });

    RunInfo RunInfoOf(SqliteConnection connection, string runId)
    {
        var found = Query(connection, null, RunColumns + " WHERE run_uuid = $id", ReadRunInfo, ("$id", runId));
        return found.Count > 0 ? found[0] : throw new ArgumentException($"run {runId}: not in {DatabasePath}");
    }

    const string RunColumns = "SELECT run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage FROM runs";

    RunInfo ReadRunInfo(SqliteDataReader r) => new(r.GetString(0), r.GetInt64(1).ToString(CultureInfo.InvariantCulture), r.IsDBNull(2) ? "" : r.GetString(2),
        r.IsDBNull(3) ? "" : r.GetString(3), ParseStatus(r.IsDBNull(4) ? "RUNNING" : r.GetString(4), r.GetString(0)), NullableLong(r, 5) ?? 0, NullableLong(r,
            6),
        r.IsDBNull(7) ? "" : r.GetString(7), r.IsDBNull(8) ? "active" : r.GetString(8));

    RunStatus ParseStatus(string name, string runId)
    {
        try
        {
            return MlflowTags.ParseStatus(name);
        }
        catch (InvalidDataException)
        {
            throw new InvalidDataException($"{DatabasePath}: run {runId} has status '{name}', none of MLflow's");
        }
    }

    static Metric ReadMetric(SqliteDataReader r) => new(r.GetString(0), r.GetBoolean(4) ? double.NaN : r.GetDouble(1), NullableLong(r, 2) ?? 0, r.GetInt64(3));

    // ---- plumbing ----

    long ExperimentNumber(string experimentId) =>
        long.TryParse(experimentId, NumberStyles.None, CultureInfo.InvariantCulture, out long id)
            ? id : throw new ArgumentException($"experiment {experimentId}: not in {DatabasePath} (its experiment ids are integers)");

    /// <summary>MLflow's append_to_uri_path for a local path: one '/' between the parts.</summary>
    static string AppendPath(string root, params string[] parts) => string.Join('/', [root.TrimEnd('/'), .. parts]);

    SqliteConnection Open()
    {
        var connection = new SqliteConnection(connectionString);
        connection.Open();
        // Microsoft.Data.Sqlite retries a busy statement for DefaultTimeout; SQLite's own handler also covers the
        // lock taken by BEGIN IMMEDIATE and by WAL recovery.
        Execute(connection, null, $"PRAGMA busy_timeout = {BusySeconds * 1000}");
        return connection;
    }

    /// <summary>
    /// Runs <paramref name="action"/>, naming the database in SQLite's errors: a database that is not one, or is
    /// corrupt, is a bad file (InvalidDataException); a lock held past the wait, a full disk or a read-only file is
    /// an IOException (a run reports it once and trains on).
    /// </summary>
    T Guard<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (SqliteException e) when (e.SqliteErrorCode is 26 or 11)  // SQLITE_NOTADB, SQLITE_CORRUPT
        {
            throw new InvalidDataException($"{DatabasePath}: not a usable SQLite database ({e.Message.Split('\n')[0]})", e);
        }
        catch (SqliteException e)
        {
            throw new IOException($"{DatabasePath}: {e.Message.Split('\n')[0]}", e);
        }
    }

    void Guard(Action action) => Guard(() =>
    {
        action();
        return 0;
    });

    static SqliteCommand Command(SqliteConnection connection, SqliteTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        return command;
    }

    static int Execute(SqliteConnection connection, SqliteTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(connection, transaction, sql);
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return command.ExecuteNonQuery();
    }

    static object? Scalar(SqliteConnection connection, SqliteTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(connection, transaction, sql);
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return command.ExecuteScalar();
    }

    static List<T> Query<T>(SqliteConnection connection, SqliteTransaction? transaction, string sql, Func<SqliteDataReader, T> read, params (string Name,
        object? Value)[] parameters)
    {
        using var command = Command(connection, transaction, sql);
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        using var reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read()) rows.Add(read(reader));
        return rows;
    }

    static long? NullableLong(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetInt64(i);
}
