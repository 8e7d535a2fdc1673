using Microsoft.Extensions.Options;

namespace FuncProxy.Secrets;

/// <summary>Secrets from <c>FuncProxy:Secrets:&lt;name&gt;</c>: user-secrets, environment or local.settings.json. For local work only.</summary>
public sealed class ConfigurationSecretSource : ISecretSource
{
    private readonly IOptionsMonitor<FuncProxyOptions> _options;

    public ConfigurationSecretSource(IOptionsMonitor<FuncProxyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    public Task<string?> GetSecretAsync(string name, CancellationToken cancellationToken) =>
        Task.FromResult(_options.CurrentValue.Secrets.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value) ? value : null);
}
