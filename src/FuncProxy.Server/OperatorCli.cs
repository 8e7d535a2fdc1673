using System.Globalization;
using System.Text.Json;
using FuncProxy.Admin;
using FuncProxy.EntraId;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using Microsoft.Extensions.Options;

namespace FuncProxy.Server;

/// <summary>
/// Operator verbs that work straight on Table Storage with the operator's own credentials (the same configuration as the
/// host: appsettings, environment, user-secrets; <c>DefaultAzureCredential</c> when a TableServiceUri is set). Every
/// change is written to the audit log as <c>cli:&lt;OS user&gt;</c>. Human-readable tables by default, <c>--json</c> for scripts.
/// Exit codes: 0 done, 1 not found, 2 bad usage or invalid values, 3 storage or configuration failure, 4 the key's state
/// does not allow the change (e.g. enabling a revoked key).
/// </summary>
internal static class OperatorCli
{
    public const int Ok = 0;
    public const int NotFound = 1;
    public const int Usage = 2;
    public const int Failure = 3;
    public const int Conflict = 4;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>
    /// Whether the command line is for the CLI rather than the host: a first argument that is a word (not a host setting
    /// such as <c>--urls X</c> or <c>name=value</c>), so a mistyped verb gets usage and exit 2 instead of a second gateway.
    /// </summary>
    public static bool Handles(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        return args.Length > 0 && (args[0] is "--help" or "-h" or "-?"
            || (args[0].Length > 0 && !args[0].StartsWith('-') && !args[0].StartsWith('/') && !args[0].Contains('=', StringComparison.Ordinal)));
    }

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, Action<IConfigurationBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        output ??= Console.Out;
        error ??= Console.Error;
        if (args.Length == 0 || args[0] is "help" or "--help" or "-h" || args.Contains("--help") || args.Contains("-h"))
        {
            await output.WriteLineAsync(HelpText);
            return args.Length > 0 ? Ok : Usage;
        }
        var (group, verb, rest) = args[0] == "audit"
            ? (args.Length > 1 && args[1] == "export" ? ("audit", "export", args[2..]) : ("audit", "query", args[1..]))
            : (args[0], args.Length > 1 ? args[1] : "", args.Length > 2 ? args[2..] : []);
        if (!Verbs.TryGetValue((group, verb), out var spec))
        {
            var suggestion = Suggest(group, verb) is { } s ? $" Did you mean '{s}'?" : "";
            await error.WriteLineAsync($"Unknown command '{string.Join(' ', args.Take(2))}'.{suggestion}\n{HelpText}");
            return Usage;
        }

        Arguments parsed;
        try
        {
            parsed = Arguments.Parse(rest, spec.Flags, spec.Options);
        }
        catch (ArgumentException e)
        {
            await error.WriteLineAsync($"{group} {verb}: {e.Message}\nUsage: {spec.Usage}");
            return Usage;
        }

        var builder = Host.CreateApplicationBuilder([]);
        UserSecrets.Add(builder.Configuration, builder.Environment);
        configure?.Invoke(builder.Configuration);
        builder.Logging.ClearProviders();
        builder.Services.AddFuncProxy(builder.Configuration);
        using var host = builder.Build();
        LocalAzurite? azurite = null;
        try
        {
            _ = host.Services.GetRequiredService<IOptions<FuncProxyOptions>>().Value;
            azurite = await LocalAzurite.EnsureRunningAsync(builder.Configuration, error);
            var cli = new Session(host.Services, parsed, output, error, spec.Usage);
            return await spec.Run(cli);
        }
        catch (OptionsValidationException e)
        {
            await error.WriteLineAsync("Configuration is not valid:\n  " + string.Join("\n  ", e.Failures));
            return Failure;
        }
        catch (KeyStateConflictException e)
        {
            await error.WriteLineAsync(e.Message);
            return Conflict;
        }
        catch (Exception e) when (FuncProxyTables.IsStorageFailure(e))
        {
            // One line, no stack trace: storage is down, unreachable or refuses these credentials.
            await error.WriteLineAsync($"Storage could not be reached: {FuncProxyTables.Describe(e)}");
            return Failure;
        }
        catch (InvalidOperationException e)
        {
            await error.WriteLineAsync($"Failed: {e.Message}");
            return Failure;
        }
        finally
        {
            azurite?.Dispose();
        }
    }

    private sealed record VerbSpec(string Usage, string[] Flags, string[] Options, Func<Session, Task<int>> Run);

    private static readonly Dictionary<(string, string), VerbSpec> Verbs = new()
    {
        [("keys", "create")] = new("keys create --name NAME --upstream UPSTREAM [--upstream ...] [--owner OWNER] [--expires DATE] [--limit NAME=N ...] [--meta NAME=VALUE ...] [--model GLOB ...] [--alias CLIENT_MODEL=MODEL ...] [--model-limit GLOB=NAME=N ...] [--origin ORIGIN ...] [--json]",
            ["json"], ["name", "upstream", "owner", "expires", "limit", "meta", "model", "alias", "model-limit", "origin"], s => s.CreateAsync()),
        [("keys", "list")] = new("keys list [--owner OWNER] [--status active|disabled|revoked] [--upstream UPSTREAM] [--json]",
            ["json"], ["owner", "status", "upstream"], s => s.ListAsync()),
        [("keys", "get")] = new("keys get KEY_ID [--json]", ["json"], [], s => s.GetAsync()),
        [("keys", "update")] = new("keys update KEY_ID [--name NAME] [--owner OWNER | --clear-owner] [--upstream UPSTREAM ...] [--expires DATE | --clear-expires] [--clear-limits] [--limit NAME=N|default ...] [--clear-meta] [--meta NAME=VALUE ...] [--remove-meta NAME ...] [--model GLOB ... | --clear-models] [--alias CLIENT_MODEL=MODEL ... | --clear-aliases] [--model-limit GLOB=NAME=N ... | --clear-model-limits] [--origin ORIGIN ... | --clear-origins] [--json]",
            ["json", "clear-owner", "clear-expires", "clear-limits", "clear-meta", "clear-models", "clear-aliases", "clear-model-limits", "clear-origins"],
            ["name", "owner", "upstream", "expires", "limit", "meta", "remove-meta", "model", "alias", "model-limit", "origin"], s => s.UpdateAsync()),
        [("keys", "disable")] = new("keys disable KEY_ID [--json]", ["json"], [], s => s.SetStatusAsync("disable")),
        [("keys", "enable")] = new("keys enable KEY_ID [--json]", ["json"], [], s => s.SetStatusAsync("enable")),
        [("keys", "revoke")] = new("keys revoke KEY_ID [--json]", ["json"], [], s => s.SetStatusAsync("revoke")),
        [("keys", "rotate")] = new("keys rotate KEY_ID [--grace DURATION (e.g. 3600, 90s, 30m, 24h, 7d; default 0)] [--json]",
            ["json"], ["grace"], s => s.RotateAsync()),
        [("keys", "usage")] = new("keys usage KEY_ID [--from DATE] [--to DATE] [--json]", ["json"], ["from", "to"], s => s.UsageAsync()),
        [("audit", "query")] = new("audit [--key KEY_ID] [--from DATE] [--to DATE] [--limit N] [--json]", ["json"], ["key", "from", "to", "limit"], s => s.AuditAsync()),
        [("audit", "export")] = new("audit export --from DATE --to DATE [--out FILE]   (JSON lines, newest first; FILE must not exist)",
            [], ["from", "to", "out"], s => s.AuditExportAsync()),
        [("admin-keys", "create")] = new("admin-keys create --name NAME [--json]", ["json"], ["name"], s => s.CreateAdminKeyAsync()),
        [("admin-keys", "list")] = new("admin-keys list [--json]", ["json"], [], s => s.ListAdminKeysAsync()),
        [("admin-keys", "revoke")] = new("admin-keys revoke ADMIN_KEY_ID [--json]", ["json"], [], s => s.RevokeAdminKeyAsync()),
        [("token-rules", "list")] = new("token-rules list [--json]", ["json"], [], s => s.ListTokenRulesAsync()),
        [("token-rules", "add")] = new("token-rules add --key KEY_ID (--object-id OID | --app-id CLIENT_ID | --app-role ROLE | --group GROUP_ID) [--description TEXT] [--json]",
            ["json"], ["key", "object-id", "app-id", "app-role", "group", "description"], s => s.AddTokenRuleAsync()),
        [("token-rules", "remove")] = new("token-rules remove RULE_ID [--json]", ["json"], [], s => s.RemoveTokenRuleAsync()),
    };

    /// <summary>One command's run: the services, its arguments and where to write.</summary>
    private sealed class Session(IServiceProvider services, Arguments a, TextWriter output, TextWriter error, string usage)
    {
        private readonly AuditContext _audit = new("cli:" + Environment.UserName, "local", "cli-" + Guid.NewGuid().ToString("N")[..12]);

        private T Get<T>() where T : notnull => services.GetRequiredService<T>();

        public async Task<int> CreateAsync()
        {
            var errors = new List<FieldError>();
            var name = a.Single("name");
            if (name is null)
            {
                errors.Add(new("name", "Required (--name)."));
            }
            var creation = new KeyCreation
            {
                Name = name ?? "",
                Owner = a.Single("owner"),
                AllowedUpstreams = a.All("upstream"),
                ExpiresAt = Date("expires", errors),
                Limits = Limits(errors),
                Metadata = Metadata(errors) ?? new Dictionary<string, string>(),
                AllowedOrigins = a.All("origin"),
            };
            if (ModelRules(errors) is { } rules)
            {
                creation = creation with
                {
                    AllowedModels = rules.AllowedModels ?? [],
                    ModelAliases = rules.ModelAliases ?? new Dictionary<string, string>(),
                    ModelLimits = rules.ModelLimits ?? new Dictionary<string, KeyLimits>(),
                };
            }
            Get<KeyRequests>().Validate(creation, errors);
            if (errors.Count > 0)
            {
                await Get<AuditLog>().WriteAsync(_audit, "key.create", null, "invalid", "fields: " + string.Join(", ", errors.Select(e => e.Field).Distinct()));
                return await InvalidAsync(errors);
            }
            var issued = await Get<KeyLifecycle>().CreateAsync(creation);
            await Get<AuditLog>().WriteAsync(_audit, "key.create", issued.Record.Id, "success");
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new { key = issued.Value, record = KeyView.From(issued.Record) }, Json));
                return Ok;
            }
            await output.WriteLineAsync($"Created key {issued.Record.Id} ({issued.Record.Name}) for {string.Join(", ", issued.Record.AllowedUpstreams)}.");
            await output.WriteLineAsync("Key (shown once, store it now):");
            await output.WriteLineAsync(issued.Value);
            return Ok;
        }

        public async Task<int> ListAsync()
        {
            var errors = new List<FieldError>();
            KeyStatus? status = null;
            if (a.Single("status") is { } s)
            {
                if (Enum.TryParse<KeyStatus>(s, ignoreCase: true, out var parsed) && !s.Any(char.IsDigit))
                {
                    status = parsed;
                }
                else
                {
                    errors.Add(new("status", "One of active, disabled, revoked."));
                }
            }
            if (errors.Count > 0)
            {
                return await InvalidAsync(errors);
            }
            var store = Get<KeyStore>();
            var records = new List<KeyRecord>();
            string? after = null;
            do
            {
                (var page, after) = await store.QueryAsync(a.Single("owner"), status, a.Single("upstream"), after, 1000);
                records.AddRange(page);
            }
            while (after is not null);
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(records.Select(KeyView.From), Json));
                return Ok;
            }
            await output.WriteLineAsync($"{"ID",-16}  {"NAME",-24}  {"OWNER",-16}  {"STATUS",-8}  {"UPSTREAMS",-20}  {"EXPIRES",-20}");
            foreach (var r in records)
            {
                await output.WriteLineAsync($"{r.Id,-16}  {Trim(r.Name, 24),-24}  {Trim(r.Owner ?? "-", 16),-16}  {r.Status.ToString().ToLowerInvariant(),-8}  {Trim(string.Join(',', r.AllowedUpstreams), 20),-20}  {Time(r.ExpiresAt) ?? "never",-20}");
            }
            await output.WriteLineAsync($"{records.Count} key(s).");
            return Ok;
        }

        public async Task<int> GetAsync()
        {
            if (await IdAsync() is not { } id)
            {
                return Usage;
            }
            var record = await Get<KeyStore>().FindAsync(id);
            return record is null ? await NoSuchKeyAsync(id) : await ShowAsync(record);
        }

        public async Task<int> UpdateAsync()
        {
            if (await IdAsync() is not { } id)
            {
                return Usage;
            }
            var errors = new List<FieldError>();
            var update = new KeyUpdate
            {
                Name = a.Single("name"),
                Owner = a.Flag("clear-owner") ? new Change<string?>(null) : a.Single("owner") is { } o ? new Change<string?>(o) : null,
                AllowedUpstreams = a.All("upstream") is { Count: > 0 } u ? u : null,
                ExpiresAt = a.Flag("clear-expires") ? new Change<DateTimeOffset?>(null) : Date("expires", errors) is { } e ? new Change<DateTimeOffset?>(e) : null,
                // Merged into the key as the API's merge patch is: the limits and entries not named stay as they are.
                Limits = LimitsPatch(errors),
                Metadata = MetadataPatch(errors),
            };
            var rules = ModelRules(errors);
            update = update with
            {
                AllowedModels = a.Flag("clear-models") ? [] : rules?.AllowedModels,
                ModelAliases = a.Flag("clear-aliases") ? new Dictionary<string, string>() : rules?.ModelAliases,
                ModelLimits = a.Flag("clear-model-limits") ? new Dictionary<string, KeyLimits>() : rules?.ModelLimits,
                AllowedOrigins = a.Flag("clear-origins") ? [] : a.All("origin") is { Count: > 0 } origins ? origins : null,
            };
            if (errors.Count == 0 && update.FieldNames().Count == 0)
            {
                errors.Add(new("$", "Nothing to change: give at least one option."));
            }
            Get<KeyRequests>().Validate(update, errors);
            if (errors.Count > 0)
            {
                await Get<AuditLog>().WriteAsync(_audit, "key.update", id, "invalid", "fields: " + string.Join(", ", errors.Select(x => x.Field).Distinct()));
                return await InvalidAsync(errors);
            }
            var fields = "fields: " + string.Join(", ", update.FieldNames());
            try
            {
                return await ChangeAsync("key.update", id, fields, () => Get<KeyLifecycle>().UpdateAsync(id, update));
            }
            catch (KeyUpdateRejectedException rejected)
            {
                await Get<AuditLog>().WriteAsync(_audit, "key.update", id, "invalid", "fields: " + rejected.Field);
                return await InvalidAsync([new FieldError(OptionFor(rejected.Field), rejected.Message)]);
            }
        }

        private static string OptionFor(string field) => field == "metadata" ? "meta" : field;

        public async Task<int> SetStatusAsync(string verb)
        {
            if (await IdAsync() is not { } id)
            {
                return Usage;
            }
            var keys = Get<KeyLifecycle>();
            return verb switch
            {
                "revoke" => await ChangeAsync("key.revoke", id, null, () => keys.RevokeAsync(id)),
                "disable" => await ChangeAsync("key.disable", id, null, () => keys.SetEnabledAsync(id, enabled: false)),
                _ => await ChangeAsync("key.enable", id, null, () => keys.SetEnabledAsync(id, enabled: true)),
            };
        }

        public async Task<int> RotateAsync()
        {
            if (await IdAsync() is not { } id)
            {
                return Usage;
            }
            var errors = new List<FieldError>();
            var max = Get<IOptions<FuncProxyOptions>>().Value.Admin.MaxRotationGracePeriod;
            var grace = TimeSpan.Zero;
            if (a.Single("grace") is { } g)
            {
                if (ParseDuration(g) is { } seconds)
                {
                    grace = KeyRequests.ValidateGrace(seconds, max, errors) ?? TimeSpan.Zero;
                }
                else
                {
                    errors.Add(new("grace", "A duration such as 3600, 90s, 30m, 24h or 7d."));
                }
            }
            if (errors.Count > 0)
            {
                return await InvalidAsync(errors);
            }
            var detail = "grace: " + ((long)grace.TotalSeconds).ToString(CultureInfo.InvariantCulture) + " s";
            IssuedKey? issued;
            try
            {
                issued = await Get<KeyLifecycle>().RotateAsync(id, grace);
            }
            catch (KeyStateConflictException)
            {
                await Get<AuditLog>().WriteAsync(_audit, "key.rotate", id, "conflict", detail);
                throw;
            }
            if (issued is null)
            {
                await Get<AuditLog>().WriteAsync(_audit, "key.rotate", id, "not_found", detail);
                return await NoSuchKeyAsync(id);
            }
            await Get<AuditLog>().WriteAsync(_audit, "key.rotate", id, "success", detail);
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new { key = issued.Value, record = KeyView.From(issued.Record) }, Json));
                return Ok;
            }
            await output.WriteLineAsync($"Rotated key {id}. " + (grace > TimeSpan.Zero
                ? $"The old secret works until {Time(issued.Record.PreviousSecretExpiresAt)}."
                : "The old secret no longer works."));
            await output.WriteLineAsync("New key (shown once, store it now):");
            await output.WriteLineAsync(issued.Value);
            return Ok;
        }

        public async Task<int> UsageAsync()
        {
            if (await IdAsync() is not { } id)
            {
                return Usage;
            }
            var errors = new List<FieldError>();
            var to = Date("to", errors) ?? DateTimeOffset.UtcNow;
            var from = Date("from", errors) ?? to.AddDays(-1);
            if (from >= to)
            {
                errors.Add(new("from", "Must be before --to."));
            }
            if (errors.Count > 0)
            {
                return await InvalidAsync(errors);
            }
            if (await Get<KeyStore>().FindAsync(id) is null)
            {
                return await NoSuchKeyAsync(id);
            }
            var rows = await Get<IUsageReader>().ReadAsync(id, from, to);
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new
                {
                    keyId = id, from, to,
                    totals = new
                    {
                        requests = rows.Sum(r => r.Requests), inputTokens = rows.Sum(r => r.InputTokens), outputTokens = rows.Sum(r => r.OutputTokens),
                        cachedInputTokens = rows.Sum(r => r.CachedInputTokens), costUsd = rows.Sum(r => r.CostMicroUsd) / 1_000_000m,
                        requestsWithoutUsage = rows.Sum(r => r.RequestsWithoutUsage),
                    },
                    hours = rows.Select(r => new
                    {
                        hour = r.Hour, upstream = r.Upstream, model = r.Model.Length == 0 ? null : r.Model, requests = r.Requests,
                        inputTokens = r.InputTokens, outputTokens = r.OutputTokens, cachedInputTokens = r.CachedInputTokens,
                        costUsd = r.CostMicroUsd / 1_000_000m, requestsWithoutUsage = r.RequestsWithoutUsage,
                    }),
                }, Json));
                return Ok;
            }
            static string Usd(long micro) => (micro / 1_000_000m).ToString("0.000000", CultureInfo.InvariantCulture);
            await output.WriteLineAsync($"{"HOUR (UTC)",-17}  {"UPSTREAM",-16}  {"MODEL",-24}  {"REQUESTS",10}  {"INPUT TOK",12}  {"CACHED TOK",12}  {"OUTPUT TOK",12}  {"COST USD",14}");
            foreach (var r in rows)
            {
                await output.WriteLineAsync($"{r.Hour.UtcDateTime.ToString("yyyy-MM-dd HH:00", CultureInfo.InvariantCulture),-17}  {Trim(r.Upstream, 16),-16}  {Trim(r.Model.Length == 0 ? "-" : r.Model, 24),-24}  {r.Requests,10}  {r.InputTokens,12}  {r.CachedInputTokens,12}  {r.OutputTokens,12}  {Usd(r.CostMicroUsd),14}");
            }
            await output.WriteLineAsync($"{"total",-17}  {"",-16}  {"",-24}  {rows.Sum(r => r.Requests),10}  {rows.Sum(r => r.InputTokens),12}  {rows.Sum(r => r.CachedInputTokens),12}  {rows.Sum(r => r.OutputTokens),12}  {Usd(rows.Sum(r => r.CostMicroUsd)),14}");
            return Ok;
        }

        public async Task<int> AuditAsync()
        {
            var errors = new List<FieldError>();
            var keyId = a.Single("key");
            if (keyId is not null && !ApiKey.IsValidId(keyId))
            {
                errors.Add(new("key", "Not a key id (16 characters, as 'keys list' shows)."));
            }
            var to = Date("to", errors) ?? DateTimeOffset.UtcNow.AddSeconds(1);
            var from = Date("from", errors) ?? to.AddDays(-7);
            if (from >= to || to - from > AuditLog.MaxRange)
            {
                errors.Add(new("from", $"Must be before --to, at most {AuditLog.MaxRange.TotalDays} days earlier."));
            }
            var limit = 100;
            if (a.Single("limit") is { } l && (!int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 10_000))
            {
                errors.Add(new("limit", "A whole number from 1 to 10000."));
            }
            if (errors.Count > 0)
            {
                return await InvalidAsync(errors);
            }
            var (entries, next) = await Get<AuditLog>().QueryAsync(keyId, from, to, limit, null);
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(entries, Json));
                return Ok;
            }
            await output.WriteLineAsync($"{"TIME (UTC)",-20}  {"ACTION",-17}  {"RESULT",-15}  {"KEY",-16}  {"ACTOR",-28}  {"IP",-15}  DETAIL");
            foreach (var e in entries)
            {
                await output.WriteLineAsync($"{Time(e.Time),-20}  {e.Action,-17}  {e.Result,-15}  {e.KeyId ?? "-",-16}  {Trim(e.Actor, 28),-28}  {Trim(e.ClientIp, 15),-15}  {e.Detail}");
            }
            await output.WriteLineAsync($"{entries.Count} event(s){(next is null ? "." : "; more exist: narrow the range or raise --limit.")}");
            return Ok;
        }

        // Archiving before the retention sweep deletes: every event of the range, one JSON object per line, with no
        // range limit (one query per day). Into a new file, or standard output.
        public async Task<int> AuditExportAsync()
        {
            var errors = new List<FieldError>();
            var from = Date("from", errors);
            var to = Date("to", errors);
            if (from is null && !errors.Any(e => e.Field == "from"))
            {
                errors.Add(new("from", "Required (--from)."));
            }
            if (to is null && !errors.Any(e => e.Field == "to"))
            {
                errors.Add(new("to", "Required (--to)."));
            }
            if (from is not null && to is not null && from >= to)
            {
                errors.Add(new("from", "Must be before --to."));
            }
            var path = a.Single("out");
            if (path is not null && (string.IsNullOrWhiteSpace(path) || File.Exists(path) || Directory.Exists(path)))
            {
                errors.Add(new("out", "A path where no file exists yet (an export never overwrites one)."));
            }
            if (errors.Count > 0)
            {
                return await InvalidAsync(errors);
            }

            var lines = new JsonSerializerOptions(JsonSerializerDefaults.Web);
            var count = 0;
            var file = path is null ? null : new StreamWriter(new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None));
            var target = file ?? output;
            try
            {
                await foreach (var entry in Get<AuditLog>().ReadAllAsync(from!.Value, to!.Value))
                {
                    await target.WriteLineAsync(JsonSerializer.Serialize(entry, lines));
                    count++;
                }
            }
            catch
            {
                // An archive that stopped half way must not pass for a whole one.
                if (file is not null)
                {
                    await file.DisposeAsync();
                    File.Delete(path!);
                }
                throw;
            }
            if (file is not null)
            {
                await file.DisposeAsync();
                await output.WriteLineAsync($"{count} event(s) from {Time(from)} to {Time(to)} (UTC) written to {path}.");
            }
            else
            {
                await error.WriteLineAsync($"{count} event(s) from {Time(from)} to {Time(to)} (UTC).");
            }
            return Ok;
        }

        public async Task<int> CreateAdminKeyAsync()
        {
            var name = a.Single("name");
            var errors = new List<FieldError>();
            if (string.IsNullOrWhiteSpace(name) || name.Length > KeyRequests.MaxNameLength || name.Any(char.IsControl))
            {
                errors.Add(new("name", $"Required (--name), 1-{KeyRequests.MaxNameLength} characters."));
                return await InvalidAsync(errors);
            }
            var issued = await Get<AdminKeyStore>().CreateAsync(name, _audit.Actor);
            await Get<AuditLog>().WriteAsync(_audit, "adminkey.create", issued.Record.Id, "success");
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new { key = issued.Value, record = AdminView(issued.Record) }, Json));
                return Ok;
            }
            await output.WriteLineAsync($"Created admin key {issued.Record.Id} ({issued.Record.Name}). Send it as '{AdminAuthenticator.AdminKeyHeader}'.");
            await output.WriteLineAsync("Admin key (shown once, store it now):");
            await output.WriteLineAsync(issued.Value);
            return Ok;
        }

        public async Task<int> ListAdminKeysAsync()
        {
            var records = await Get<AdminKeyStore>().ListAsync();
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(records.Select(AdminView), Json));
                return Ok;
            }
            await output.WriteLineAsync($"{"ID",-16}  {"NAME",-24}  {"STATUS",-8}  {"CREATED",-20}  {"CREATED BY",-20}");
            foreach (var r in records)
            {
                await output.WriteLineAsync($"{r.Id,-16}  {Trim(r.Name, 24),-24}  {(r.IsRevoked ? "revoked" : "active"),-8}  {Time(r.CreatedAt),-20}  {Trim(r.CreatedBy ?? "-", 20),-20}");
            }
            await output.WriteLineAsync($"{records.Count} admin key(s).");
            return Ok;
        }

        public async Task<int> RevokeAdminKeyAsync()
        {
            if (await IdAsync() is not { } id)
            {
                return Usage;
            }
            var revoked = await Get<AdminKeyStore>().RevokeAsync(id);
            await Get<AuditLog>().WriteAsync(_audit, "adminkey.revoke", id, revoked is null ? "not_found" : "success");
            if (revoked is null)
            {
                await error.WriteLineAsync($"No admin key {id}.");
                return NotFound;
            }
            await output.WriteLineAsync(a.Flag("json") ? JsonSerializer.Serialize(AdminView(revoked), Json) : $"Revoked admin key {id}.");
            return Ok;
        }

        public async Task<int> ListTokenRulesAsync()
        {
            var rules = await Get<TokenRuleLifecycle>().ListAsync(CancellationToken.None);
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(rules.Select(TokenRuleView.From), Json));
                return Ok;
            }
            await output.WriteLineAsync($"{"ID",-30}  {"MATCH",-8}  {"VALUE",-36}  {"KEY",-16}  {"DESCRIPTION",-24}");
            foreach (var r in rules)
            {
                await output.WriteLineAsync($"{r.Id ?? "(configuration)",-30}  {TokenRule.NameOf(r.Match),-8}  {Trim(r.Value, 36),-36}  {r.KeyId,-16}  {Trim(r.Description ?? "-", 24),-24}");
            }
            await output.WriteLineAsync($"{rules.Count} token rule(s).");
            return Ok;
        }

        public async Task<int> AddTokenRuleAsync()
        {
            var errors = new List<FieldError>();
            var matchers = new[] { ("object-id", "objectId"), ("app-id", "appId"), ("app-role", "appRole"), ("group", "group") }
                .Where(m => a.Single(m.Item1) is not null).ToList();
            if (matchers.Count != 1)
            {
                errors.Add(new("match", "Give exactly one of --object-id, --app-id, --app-role, --group."));
                return await InvalidAsync(errors);
            }
            var (option, match) = matchers[0];
            var rule = TokenRuleLifecycle.Validate(new TokenRuleCreation(match, a.Single(option), a.Single("key"), a.Single("description")), errors);
            if (rule is null)
            {
                await Get<AuditLog>().WriteAsync(_audit, "token_rule.create", null, "invalid", "fields: " + string.Join(", ", errors.Select(e => e.Field).Distinct()));
                return await InvalidAsync([.. errors.Select(e => e.Field switch { "value" => e with { Field = option }, "keyId" => e with { Field = "key" }, _ => e })]);
            }
            var detail = rule.AuditDetail;
            var (outcome, stored) = await Get<TokenRuleLifecycle>().CreateAsync(rule, _audit.Actor, CancellationToken.None);
            switch (outcome)
            {
                case TokenRuleOutcome.NoSuchKey:
                    await Get<AuditLog>().WriteAsync(_audit, "token_rule.create", rule.KeyId, "invalid", detail);
                    return await NoSuchKeyAsync(rule.KeyId);
                case TokenRuleOutcome.Exists or TokenRuleOutcome.Configured:
                    await Get<AuditLog>().WriteAsync(_audit, "token_rule.create", rule.KeyId, "conflict", detail);
                    await error.WriteLineAsync(outcome == TokenRuleOutcome.Configured
                        ? $"The configuration (FuncProxy:ClientTokens:Rules) already maps this {match}."
                        : $"A rule for this {match} exists already ({TokenRuleStore.IdFor(rule.Match, rule.Value)}); remove it first to map it to another key.");
                    return Conflict;
            }
            await Get<AuditLog>().WriteAsync(_audit, "token_rule.create", rule.KeyId, "success", detail);
            await output.WriteLineAsync(a.Flag("json")
                ? JsonSerializer.Serialize(TokenRuleView.From(stored!), Json)
                : $"Added token rule {stored!.Id}: tokens with {match} {stored.Value} act as key {stored.KeyId} (on other instances within FuncProxy:ClientTokens:RuleRefreshInterval).");
            return Ok;
        }

        public async Task<int> RemoveTokenRuleAsync()
        {
            var id = a.Positional.FirstOrDefault();
            if (a.Positional.Count != 1 || !TokenRuleStore.IsValidId(id))
            {
                await error.WriteLineAsync($"Needs one token rule id (as 'token-rules list' shows it).\nUsage: {usage}");
                return Usage;
            }
            var deleted = await Get<TokenRuleLifecycle>().DeleteAsync(id!, CancellationToken.None);
            await Get<AuditLog>().WriteAsync(_audit, "token_rule.delete", deleted?.KeyId, deleted is null ? "not_found" : "success",
                deleted is null ? "rule " + id : deleted.AuditDetail);
            if (deleted is null)
            {
                await error.WriteLineAsync($"No stored token rule {id}.");
                return NotFound;
            }
            await output.WriteLineAsync(a.Flag("json") ? JsonSerializer.Serialize(TokenRuleView.From(deleted), Json) : $"Removed token rule {id}.");
            return Ok;
        }

        private async Task<int> ChangeAsync(string action, string id, string? detail, Func<Task<KeyRecord?>> change)
        {
            KeyRecord? record;
            try
            {
                record = await change();
            }
            catch (KeyStateConflictException)
            {
                await Get<AuditLog>().WriteAsync(_audit, action, id, "conflict", detail);
                throw;
            }
            await Get<AuditLog>().WriteAsync(_audit, action, id, record is null ? "not_found" : "success", detail);
            if (record is null)
            {
                return await NoSuchKeyAsync(id);
            }
            if (!a.Flag("json"))
            {
                await output.WriteLineAsync($"{action["key.".Length..] switch { "revoke" => "Revoked", "disable" => "Disabled", "enable" => "Enabled", _ => "Updated" }} key {id}.");
            }
            return await ShowAsync(record);
        }

        private async Task<int> ShowAsync(KeyRecord r)
        {
            if (a.Flag("json"))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(KeyView.From(r), Json));
                return Ok;
            }
            var limits = LimitsText(r.Limits);
            var modelLimits = r.ModelLimits.Count == 0 ? "-" : string.Join("; ", r.ModelLimits.Select(m => $"{m.Key}: {LimitsText(m.Value)}"));
            await output.WriteLineAsync(
                $"""
                  id:               {r.Id}
                  name:             {r.Name}
                  owner:            {r.Owner ?? "-"}
                  status:           {r.Status.ToString().ToLowerInvariant()}
                  created:          {Time(r.CreatedAt)}
                  expires:          {Time(r.ExpiresAt) ?? "never"}
                  upstreams:        {string.Join(", ", r.AllowedUpstreams)}
                  limits:           {(limits.Length == 0 ? "defaults" : limits)}
                  metadata:         {(r.Metadata.Count == 0 ? "-" : string.Join(", ", r.Metadata.Select(m => $"{m.Key}={m.Value}")))}
                  models:           {(r.AllowedModels.Count == 0 ? "any" : string.Join(", ", r.AllowedModels))}
                  aliases:          {(r.ModelAliases.Count == 0 ? "-" : string.Join(", ", r.ModelAliases.Select(m => $"{m.Key}->{m.Value}")))}
                  model limits:     {modelLimits}
                  origins:          {(r.AllowedOrigins.Count == 0 ? "any its upstreams allow" : string.Join(", ", r.AllowedOrigins))}
                  old secret until: {(r.PreviousSecretHash is null ? "-" : Time(r.PreviousSecretExpiresAt))}
                """);
            return Ok;
        }

        private static string LimitsText(KeyLimits? l) => l is null ? "defaults" : string.Join(", ",
            KeyRequests.LimitValues(l).Where(x => x.Value is not null).Select(x => $"{x.Name}={KeyRequests.LimitText(x.Name, x.Value!.Value)}"));

        private async Task<string?> IdAsync()
        {
            var id = a.Positional.FirstOrDefault();
            if (a.Positional.Count != 1 || !ApiKey.IsValidId(id))
            {
                await error.WriteLineAsync($"Needs one key id (16 characters, as the list shows).\nUsage: {usage}");
                return null;
            }
            return id;
        }

        private async Task<int> NoSuchKeyAsync(string id)
        {
            await error.WriteLineAsync($"No key {id}.");
            return NotFound;
        }

        private async Task<int> InvalidAsync(List<FieldError> errors)
        {
            foreach (var e in errors)
            {
                var message = e.Message;
                if (e.Field.StartsWith("allowedUpstreams[", StringComparison.Ordinal) && message.StartsWith("Not a configured upstream", StringComparison.Ordinal))
                {
                    var index = int.Parse(e.Field["allowedUpstreams[".Length..^1], CultureInfo.InvariantCulture);
                    var given = index < a.All("upstream").Count ? a.All("upstream")[index] : "?";
                    var configured = Get<IOptions<FuncProxyOptions>>().Value.Upstreams.Keys.Order(StringComparer.Ordinal).ToList();
                    message = $"'{Trim(given, 64)}' is not a configured upstream. Configured: {(configured.Count == 0 ? "none" : string.Join(", ", configured))} (or '*' for all).";
                }
                await error.WriteLineAsync($"{Flag(e.Field)}: {message}");
            }
            await error.WriteLineAsync($"Usage: {usage}");
            return Usage;
        }

        private DateTimeOffset? Date(string option, List<FieldError> errors)
        {
            if (a.Single(option) is not { } text)
            {
                return null;
            }
            if (KeyRequests.TryParseTimestamp(text, out var value))
            {
                return value;
            }
            if (DateTime.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var day))
            {
                return new DateTimeOffset(day, TimeSpan.Zero);
            }
            errors.Add(new(option, "A date (2027-01-31, UTC) or an RFC 3339 date-time with an offset (2027-01-31T12:00:00Z)."));
            return null;
        }

        /// <summary>The <c>--limit</c> pairs as the API's <c>limits</c> merge patch; <c>NAME=default</c> removes that override.</summary>
        private MapPatch<long>? LimitPairs(List<FieldError> errors)
        {
            var pairs = Pairs("limit", errors);
            if (pairs.Count == 0)
            {
                return null;
            }
            var json = "{" + string.Join(",", pairs.Select(p => JsonSerializer.Serialize(p.Key) + ":" + LimitValue(p.Value))) + "}";
            // The same parser as the management API, so both name and check limits alike.
            using var document = JsonDocument.Parse("{\"limits\":" + json + "}");
            var parseErrors = new List<FieldError>();
            var update = Get<KeyRequests>().ParseUpdate(document.RootElement, parseErrors);
            errors.AddRange(parseErrors);
            return update?.Limits;
        }

        private static string LimitValue(string text) =>
            decimal.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n) ? n.ToString(CultureInfo.InvariantCulture)
            : text is "default" or "null" ? "null"
            : JsonSerializer.Serialize(text);

        private static string LimitsJson(IEnumerable<KeyValuePair<string, string>> pairs) =>
            "{" + string.Join(",", pairs.Select(p => JsonSerializer.Serialize(p.Key) + ":" + LimitValue(p.Value))) + "}";

        /// <summary>--model, --alias and --model-limit, checked by the management API's parser; null when none was given.</summary>
        private KeyUpdate? ModelRules(List<FieldError> errors)
        {
            var models = a.All("model");
            var aliases = Pairs("alias", errors);
            var modelLimits = Pairs("model-limit", errors);
            if (models.Count == 0 && aliases.Count == 0 && modelLimits.Count == 0)
            {
                return null;
            }
            var fields = new List<string>();
            if (models.Count > 0)
            {
                fields.Add("\"allowedModels\":" + JsonSerializer.Serialize(models));
            }
            if (aliases.Count > 0)
            {
                fields.Add("\"modelAliases\":{" + string.Join(",", aliases.Select(p => JsonSerializer.Serialize(p.Key) + ":" + JsonSerializer.Serialize(p.Value))) + "}");
            }
            if (modelLimits.Count > 0)
            {
                var byModel = new Dictionary<string, List<KeyValuePair<string, string>>>(StringComparer.Ordinal);
                foreach (var (glob, limit) in modelLimits)
                {
                    var eq = limit.IndexOf('=', StringComparison.Ordinal);
                    if (eq <= 0)
                    {
                        errors.Add(new("model-limit", $"'{Trim(glob + "=" + limit, 40)}' is not GLOB=NAME=N."));
                        continue;
                    }
                    (byModel.TryGetValue(glob, out var list) ? list : byModel[glob] = []).Add(new(limit[..eq], limit[(eq + 1)..]));
                }
                fields.Add("\"modelLimits\":{" + string.Join(",", byModel.Select(m => JsonSerializer.Serialize(m.Key) + ":" + LimitsJson(m.Value))) + "}");
            }
            using var document = JsonDocument.Parse("{" + string.Join(",", fields) + "}");
            var parseErrors = new List<FieldError>();
            var update = Get<KeyRequests>().ParseUpdate(document.RootElement, parseErrors);
            errors.AddRange(parseErrors);
            return update;
        }

        private KeyLimits? Limits(List<FieldError> errors) =>
            LimitPairs(errors) is { } patch ? KeyLimits.FromOverrides(patch.Set) ?? new KeyLimits() : null;

        private MapPatch<long>? LimitsPatch(List<FieldError> errors)
        {
            var patch = LimitPairs(errors);
            return a.Flag("clear-limits") ? (patch ?? new MapPatch<long>()) with { RemoveAll = true } : patch;
        }

        private Dictionary<string, string>? Metadata(List<FieldError> errors)
        {
            var pairs = Pairs("meta", errors);
            return pairs.Count == 0 ? null : pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        }

        private MapPatch<string>? MetadataPatch(List<FieldError> errors)
        {
            var set = Metadata(errors);
            var remove = a.All("remove-meta");
            if (set is null && remove.Count == 0 && !a.Flag("clear-meta"))
            {
                return null;
            }
            return new MapPatch<string>
            {
                RemoveAll = a.Flag("clear-meta"),
                Set = set ?? new Dictionary<string, string>(StringComparer.Ordinal),
                Remove = remove.Where(r => set is null || !set.ContainsKey(r)).ToList(),
            };
        }

        private List<KeyValuePair<string, string>> Pairs(string option, List<FieldError> errors)
        {
            var pairs = new List<KeyValuePair<string, string>>();
            foreach (var item in a.All(option))
            {
                var eq = item.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    errors.Add(new(option, $"'{Trim(item, 40)}' is not NAME=VALUE."));
                    continue;
                }
                pairs.Add(new(item[..eq], item[(eq + 1)..]));
            }
            return pairs;
        }
    }

    /// <summary>The command-line option an API field error is about: operators typed <c>--upstream</c>, not <c>allowedUpstreams</c>.</summary>
    internal static string Flag(string field)
    {
        var bracket = field.IndexOf('[', StringComparison.Ordinal);
        var dot = field.IndexOf('.', StringComparison.Ordinal);
        var root = bracket >= 0 ? field[..bracket] : dot >= 0 ? field[..dot] : field;
        var flag = root switch
        {
            "$" => null,
            "allowedUpstreams" => "--upstream",
            "allowedOrigins" => "--origin",
            "expiresAt" => "--expires",
            "limits" => "--limit",
            "metadata" => "--meta",
            "gracePeriodSeconds" => "--grace",
            _ => "--" + root,
        };
        if (flag is null)
        {
            return "error";
        }
        return dot >= 0 && root is "limits" or "metadata" ? $"{flag} {field[(dot + 1)..]}" : flag;
    }

    /// <summary>The known command closest to a mistyped one (<c>key list</c>: <c>keys list</c>), if one is close.</summary>
    private static string? Suggest(string group, string verb)
    {
        static int Distance(string x, string y)
        {
            var d = new int[y.Length + 1];
            for (var j = 0; j <= y.Length; j++)
            {
                d[j] = j;
            }
            for (var i = 1; i <= x.Length; i++)
            {
                var previous = d[0];
                d[0] = i;
                for (var j = 1; j <= y.Length; j++)
                {
                    var current = d[j];
                    d[j] = Math.Min(Math.Min(d[j] + 1, d[j - 1] + 1), previous + (x[i - 1] == y[j - 1] ? 0 : 1));
                    previous = current;
                }
            }
            return d[y.Length];
        }
        var best = Verbs.Keys
            .Select(k => (Name: k.Item1 == "audit" ? "audit" : $"{k.Item1} {k.Item2}", Cost: Distance(group, k.Item1) + (k.Item1 == "audit" ? 0 : Distance(verb, k.Item2))))
            .MinBy(c => c.Cost);
        return best.Cost is > 0 and <= 3 ? best.Name : null;
    }

    /// <summary>Seconds, or a number with s, m, h or d.</summary>
    internal static long? ParseDuration(string text)
    {
        var unit = text.Length > 0 && char.IsLetter(text[^1]) ? char.ToLowerInvariant(text[^1]) : 's';
        var number = char.IsLetter(text.Length > 0 ? text[^1] : '0') ? text[..^1] : text;
        if (!long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > 100_000_000)
        {
            return null;
        }
        return unit switch { 's' => n, 'm' => n * 60, 'h' => n * 3600, 'd' => n * 86400, _ => null };
    }

    private static object AdminView(AdminKeyRecord r) => new
    {
        r.Id, r.Name, Status = r.IsRevoked ? "revoked" : "active", r.CreatedAt, r.CreatedBy, r.RevokedAt,
    };

    private static string? Time(DateTimeOffset? t) => t?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    private static string Trim(string s, int max) => s.Length <= max ? s : string.Concat(s.AsSpan(0, max - 1), "…");

    private static string HelpText => "FuncProxy operator commands (straight on Table Storage, with your own credentials):\n  "
        + string.Join("\n  ", Verbs.Values.Select(v => v.Usage))
        + $"""

        keys create/update --limit NAME=N (N a whole number, 0: no such limit for this key), NAME one of:
          {string.Join(", ", KeyRequests.LimitNames)}
        Every change is written to the audit log as cli:<your OS user>. --json prints JSON for scripts.
        Settings (FuncProxy:Storage, FuncProxy:Upstreams, ...) come from appsettings.json, then the user-secrets of
        src/FuncProxy.Server (dotnet user-secrets --project src/FuncProxy.Server set NAME VALUE, in every environment),
        then environment variables (FuncProxy__Storage__ConnectionString); later ones win. The host reads the same.
        Exit codes: 0 done, 1 not found, 2 bad usage or invalid values, 3 storage or configuration failure,
                    4 the key's state does not allow it (e.g. enabling a revoked key).
        With no verb, or only settings such as --urls http://127.0.0.1:8080, the program runs the gateway host instead
        (exit codes: 0 stopped, 2 bad usage, 3 invalid setting or storage could not be started, 5 cannot listen).
        """;

    private sealed class Arguments
    {
        private readonly Dictionary<string, List<string>> _options = new(StringComparer.OrdinalIgnoreCase);
        private readonly HashSet<string> _flags = new(StringComparer.OrdinalIgnoreCase);
        public List<string> Positional { get; } = [];

        /// <summary>Parses <c>--name value</c>, <c>--name=value</c> and flags; an option the verb does not know is an error.</summary>
        public static Arguments Parse(string[] args, string[] flags, string[] options)
        {
            var result = new Arguments();
            for (var i = 0; i < args.Length; i++)
            {
                var arg = args[i];
                if (!arg.StartsWith("--", StringComparison.Ordinal))
                {
                    result.Positional.Add(arg);
                    continue;
                }
                var name = arg[2..];
                string? value = null;
                var eq = name.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0)
                {
                    value = name[(eq + 1)..];
                    name = name[..eq];
                }
                if (flags.Contains(name, StringComparer.OrdinalIgnoreCase))
                {
                    if (value is not null)
                    {
                        throw new ArgumentException($"--{name} takes no value.");
                    }
                    result._flags.Add(name);
                    continue;
                }
                if (!options.Contains(name, StringComparer.OrdinalIgnoreCase))
                {
                    throw new ArgumentException($"unknown option --{name}.");
                }
                if (value is null)
                {
                    if (i + 1 >= args.Length)
                    {
                        throw new ArgumentException($"--{name} needs a value.");
                    }
                    value = args[++i];
                }
                if (!result._options.TryGetValue(name, out var list))
                {
                    result._options[name] = list = [];
                }
                list.Add(value);
            }
            return result;
        }

        public string? Single(string name) => _options.TryGetValue(name, out var v) ? v[^1] : null;
        public IReadOnlyList<string> All(string name) => _options.TryGetValue(name, out var v) ? v : [];
        public bool Flag(string name) => _flags.Contains(name);
    }
}
