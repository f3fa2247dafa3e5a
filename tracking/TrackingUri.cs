namespace Medformer.Tracking;

/// <summary>
/// Where runs go, as MLflow names it: an SQLite database (<c>sqlite:///mlflow.db</c> relative to the working folder,
/// <c>sqlite:////abs/mlflow.db</c>), a folder of MLflow's file store (<c>./mlruns</c>, <c>file:///abs/mlruns</c>,
/// <c>file:rel</c>), a tracking server (<c>http(s)://host:port</c>), or <c>none</c> (no tracking). Resolved from the
/// command's <c>--tracking-uri</c>, else <c>MLFLOW_TRACKING_URI</c>, else <c>sqlite:///mlflow.db</c>, MLflow's own
/// default since 3.7.
/// </summary>
public sealed record TrackingUri
{
    public const string Variable = "MLFLOW_TRACKING_URI";
    public const string Default = "sqlite:///mlflow.db";

    TrackingUri(string text, string? folder, Uri? server, string? username = null, string? password = null, string? database = null) =>
        (Text, Folder, Server, Username, Password, Database) = (text, folder, server, username, password, database);

    /// <summary>What was given, for messages, with any password in it replaced by ***.</summary>
    public string Text { get; }

    /// <summary>Basic-auth credentials written into the URL (<c>http://user:pass@host</c>); never printed or stored.</summary>
    public string? Username { get; }

    public string? Password { get; }

    /// <summary>The local store's folder (absolute), or null.</summary>
    public string? Folder { get; }

    /// <summary>The tracking server's base URL, or null.</summary>
    public Uri? Server { get; }

    /// <summary>The SQLite database file (absolute), or null.</summary>
    public string? Database { get; }

    public bool IsNone => Folder is null && Server is null && Database is null;

    /// <summary>The option's value, else the environment's, else sqlite:///mlflow.db.</summary>
    public static TrackingUri Resolve(string? option) =>
        Parse(option is { Length: > 0 } ? option : Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } env ? env : Default);

    public static TrackingUri Parse(string text)
    {
        string t = text.Trim();
        if (t.Equals("none", StringComparison.OrdinalIgnoreCase) || t.Equals("off", StringComparison.OrdinalIgnoreCase)) return new(t, null, null);
        if (t.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || t.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            if (!Uri.TryCreate(t.TrimEnd('/') + "/", UriKind.Absolute, out var uri) || uri.Host.Length == 0)
                throw new ArgumentException($"--tracking-uri '{Redact(t)}': not a valid URL");
            if (uri.UserInfo.Length == 0) return new(t, null, uri);
            // Credentials in the URL are used for basic auth and kept out of the server's URL, which is printed and
            // written into spool files.
            string[] parts = uri.UserInfo.Split(':', 2);
            var bare = new UriBuilder(uri) { UserName = "", Password = "" }.Uri;
            return new(Redact(t), null, bare, Uri.UnescapeDataString(parts[0]), parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : null);
        }
        if (t.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            string path = t.StartsWith("file://", StringComparison.OrdinalIgnoreCase) ? new Uri(t).LocalPath : t["file:".Length..];
            return new(t, Path.GetFullPath(path), null);
        }
        if (t.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            // SQLAlchemy's form, as MLflow takes it: sqlite:///relative.db, sqlite:////absolute.db.
            string rest = t["sqlite:".Length..];
            if (!rest.StartsWith("///", StringComparison.Ordinal) || rest.Length == 3 || rest.Contains('?'))
                throw new ArgumentException($"--tracking-uri '{text}': an SQLite URI names a file, as sqlite:///mlflow.db " +
                    "(relative) or sqlite:////abs/mlflow.db");
            return new(t, null, null, database: Path.GetFullPath(rest[3..]));
        }
        if (t.Contains("://", StringComparison.Ordinal) || t.StartsWith("databricks", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"--tracking-uri '{Redact(t)}': Medformer writes to an SQLite database (sqlite:///…), a folder (file:…), a tracking " +
                $"server (http(s)://…) or none; start `mlflow server --backend-store-uri {Redact(t)}` and point it there");
        return new(t, Path.GetFullPath(t), null);
    }

    /// <summary>"http://user:***@host/…" for "http://user:secret@host/…"; other text as it is.</summary>
    public static string Redact(string text)
    {
        int scheme = text.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0) return text;
        int hostEnd = text.IndexOfAny(['/', '?', '#'], scheme + 3);
        int at = text.LastIndexOf('@', hostEnd < 0 ? text.Length - 1 : hostEnd - 1);
        if (at <= scheme) return text;
        string user = text[(scheme + 3)..at].Split(':', 2)[0];
        return $"{text[..(scheme + 3)]}{user}:***{text[at..]}";
    }

    /// <summary>
    /// <paramref name="options"/> with this URL's credentials for basic auth, unless MLflow's variables
    /// (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME) already give credentials, which win as in MLflow.
    /// </summary>
    public RestOptions WithCredentials(RestOptions? options)
    {
        options ??= new RestOptions();
        if (Username is null || options.Token is { Length: > 0 } || options.Username is { Length: > 0 }) return options;
        return options with { Username = Username, Password = Password };
    }

    /// <summary>A reader of the runs there: the local store (which must exist) or the server.</summary>
    public ITrackingReader OpenReader(RestOptions? options = null)
    {
        if (Server is not null) return new RestStore(Server, WithCredentials(options));
        if (Folder is null && Database is null) throw new ArgumentException("--tracking-uri none: there are no runs to read");
        string where = Database ?? Folder!;
        if (Database is not null ? !File.Exists(Database) : !Directory.Exists(Folder))
            throw new ArgumentException($"no MLflow runs at {where} (set --tracking-uri or MLFLOW_TRACKING_URI)");
        return OpenStore()!;
    }

    /// <summary>The local store (created if missing), or null for a server or none.</summary>
    public ITrackingStore? OpenStore() => Database is not null ? new SqliteStore(Database) : Folder is not null ? new FileStore(Folder) : null;

    public override string ToString() => Database ?? Folder ?? Server?.ToString() ?? "none";
}
