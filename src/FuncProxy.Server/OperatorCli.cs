using System.Globalization;
using System.Text.Json;
using FuncProxy.Keys;
using Microsoft.Extensions.Options;

namespace FuncProxy.Server;

/// <summary>
/// Operator verbs that work straight on Table Storage with the operator's own credentials (the same configuration as the
/// host: appsettings, environment, user-secrets; <c>DefaultAzureCredential</c> when a TableServiceUri is set).
/// Exit codes: 0 done, 1 not found, 2 bad usage, 3 storage or configuration failure.
/// </summary>
internal static class OperatorCli
{
    public const int Ok = 0;
    public const int NotFound = 1;
    public const int Usage = 2;
    public const int Failure = 3;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static bool Handles(string[] args) => args.Length > 0 && args[0] is "keys" or "help" or "--help" or "-h";

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, Action<IConfigurationBuilder>? configure = null)
    {
        output ??= Console.Out;
        error ??= Console.Error;
        if (args.Length < 2 || args[0] != "keys")
        {
            await output.WriteLineAsync(HelpText);
            return args.Length > 0 && args[0] is "help" or "--help" or "-h" ? Ok : Usage;
        }

        Arguments parsed;
        try
        {
            parsed = Arguments.Parse(args[2..]);
        }
        catch (ArgumentException e)
        {
            await error.WriteLineAsync(e.Message);
            return Usage;
        }

        var builder = Host.CreateApplicationBuilder([]);
        configure?.Invoke(builder.Configuration);
        builder.Logging.ClearProviders();
        builder.Services.AddFuncProxy(builder.Configuration);
        using var host = builder.Build();
        LocalAzurite? azurite = null;
        try
        {
            _ = host.Services.GetRequiredService<IOptions<FuncProxyOptions>>().Value;
            azurite = await LocalAzurite.EnsureRunningAsync(builder.Configuration, error);
            var keys = host.Services.GetRequiredService<KeyLifecycle>();
            var store = host.Services.GetRequiredService<KeyStore>();
            return args[1] switch
            {
                "create" => await CreateAsync(keys, parsed, output, error),
                "list" => await ListAsync(store, parsed, output),
                "revoke" => await RevokeAsync(keys, parsed, output, error),
                _ => await UnknownAsync(args[1], error),
            };
        }
        catch (OptionsValidationException e)
        {
            await error.WriteLineAsync("Configuration is not valid:\n  " + string.Join("\n  ", e.Failures));
            return Failure;
        }
        catch (Exception e) when (e is Azure.RequestFailedException or InvalidOperationException or HttpRequestException or Azure.Identity.AuthenticationFailedException)
        {
            await error.WriteLineAsync($"Failed: {e.Message}");
            return Failure;
        }
        finally
        {
            azurite?.Dispose();
        }
    }

    private static async Task<int> CreateAsync(KeyLifecycle keys, Arguments a, TextWriter output, TextWriter error)
    {
        var name = a.Single("name");
        var upstreams = a.All("upstream");
        if (string.IsNullOrWhiteSpace(name) || upstreams.Count == 0)
        {
            await error.WriteLineAsync("keys create needs --name NAME and at least one --upstream UPSTREAM ('*' for all).");
            return Usage;
        }
        DateTimeOffset? expires = null;
        if (a.Single("expires") is { } e)
        {
            if (!DateTimeOffset.TryParse(e, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed))
            {
                await error.WriteLineAsync($"--expires '{e}' is not a date (use ISO 8601, e.g. 2027-01-31 or 2027-01-31T12:00:00Z).");
                return Usage;
            }
            expires = parsed;
        }
        var issued = await keys.CreateAsync(new KeyCreation { Name = name, Owner = a.Single("owner"), AllowedUpstreams = upstreams, ExpiresAt = expires });
        if (a.Flag("json"))
        {
            await output.WriteLineAsync(JsonSerializer.Serialize(new { key = issued.Value, record = View(issued.Record) }, Json));
        }
        else
        {
            await output.WriteLineAsync($"Created key {issued.Record.Id} ({issued.Record.Name}) for {string.Join(", ", issued.Record.AllowedUpstreams)}.");
            await output.WriteLineAsync("Key (shown once, store it now):");
            await output.WriteLineAsync(issued.Value);
        }
        return Ok;
    }

    private static async Task<int> ListAsync(KeyStore store, Arguments a, TextWriter output)
    {
        var records = new List<KeyRecord>();
        await foreach (var r in store.ListAsync())
        {
            records.Add(r);
        }
        if (a.Flag("json"))
        {
            await output.WriteLineAsync(JsonSerializer.Serialize(records.Select(View), Json));
            return Ok;
        }
        await output.WriteLineAsync($"{"ID",-16}  {"NAME",-24}  {"OWNER",-16}  {"STATUS",-8}  {"UPSTREAMS",-20}  {"EXPIRES",-20}");
        foreach (var r in records)
        {
            await output.WriteLineAsync($"{r.Id,-16}  {Trim(r.Name, 24),-24}  {Trim(r.Owner ?? "-", 16),-16}  {r.Status,-8}  {Trim(string.Join(',', r.AllowedUpstreams), 20),-20}  {r.ExpiresAt?.ToString("u", CultureInfo.InvariantCulture) ?? "never",-20}");
        }
        await output.WriteLineAsync($"{records.Count} key(s).");
        return Ok;
    }

    private static async Task<int> RevokeAsync(KeyLifecycle keys, Arguments a, TextWriter output, TextWriter error)
    {
        var id = a.Positional.FirstOrDefault();
        if (!ApiKey.IsValidId(id))
        {
            await error.WriteLineAsync("keys revoke needs a key id (16 characters, as 'keys list' shows).");
            return Usage;
        }
        var revoked = await keys.RevokeAsync(id!);
        if (revoked is null)
        {
            await error.WriteLineAsync($"No key {id}.");
            return NotFound;
        }
        await output.WriteLineAsync($"Revoked key {id}.");
        return Ok;
    }

    private static async Task<int> UnknownAsync(string verb, TextWriter error)
    {
        await error.WriteLineAsync($"Unknown verb 'keys {verb}'.\n{HelpText}");
        return Usage;
    }

    private static object View(KeyRecord r) => new
    {
        r.Id, r.Name, r.Owner, Status = r.Status.ToString(), r.CreatedAt, r.ExpiresAt, r.AllowedUpstreams, r.Limits, r.Metadata,
    };

    private static string Trim(string s, int max) => s.Length <= max ? s : string.Concat(s.AsSpan(0, max - 1), "…");

    private const string HelpText = """
        FuncProxy operator commands (straight on Table Storage, with your own credentials):
          keys create --name NAME --upstream UPSTREAM [--upstream ...] [--owner OWNER] [--expires DATE] [--json]
          keys list [--json]
          keys revoke KEY_ID
        Storage comes from FuncProxy:Storage (appsettings, environment FuncProxy__Storage__..., user-secrets).
        """;

    private sealed class Arguments
    {
        private readonly Dictionary<string, List<string>> _options = new(StringComparer.OrdinalIgnoreCase);
        private readonly HashSet<string> _flags = new(StringComparer.OrdinalIgnoreCase);
        public List<string> Positional { get; } = [];

        private static readonly HashSet<string> FlagNames = new(StringComparer.OrdinalIgnoreCase) { "json" };

        public static Arguments Parse(string[] args)
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
                if (FlagNames.Contains(name) && value is null)
                {
                    result._flags.Add(name);
                    continue;
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
