using Azure.Security.KeyVault.Secrets;
using FuncProxy.Admin;
using FuncProxy.Backends;
using FuncProxy.Http;
using FuncProxy.Hosting;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using FuncProxy.RateLimiting;
using FuncProxy.Secrets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the FuncProxy engine: one call for either host.</summary>
public static class FuncProxyServiceCollectionExtensions
{
    public static IServiceCollection AddFuncProxy(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);

        services.AddOptions<FuncProxy.FuncProxyOptions>()
            .Bind(configuration.GetSection(FuncProxy.FuncProxyOptions.SectionName))
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<FuncProxy.FuncProxyOptions>, FuncProxy.FuncProxyOptionsValidator>());

        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.TryAddSingleton<FuncProxy.Telemetry.FuncProxyMetrics>();
        services.AddFuncProxyTelemetry(configuration);
        services.AddHttpForwarder();

        services.TryAddSingleton<FuncProxy.FuncProxyTables>();
        services.TryAddSingleton<KeyStore>();
        services.TryAddSingleton<KeyRecordCache>();
        services.TryAddSingleton<FuncProxy.EntraId.EntraTokenValidator>();
        services.TryAddSingleton<FuncProxy.EntraId.TokenRuleStore>();
        services.TryAddSingleton<FuncProxy.EntraId.TokenRules>();
        services.TryAddSingleton<FuncProxy.EntraId.TokenRuleLifecycle>();
        services.TryAddSingleton<FuncProxy.EntraId.ClientTokenAuthenticator>();
        services.TryAddSingleton<KeyAuthenticator>();
        services.TryAddSingleton<KeyLifecycle>();
        services.TryAddSingleton<ClientAddress>();
        services.TryAddSingleton<ClientKeyLockout>();
        // Per-IP counters on the limiter's leased counters and lockouts shared through the lockouts table (FuncProxy:Lockouts).
        services.TryAddSingleton<IpCounters>();
        services.TryAddSingleton<LockoutBoard>();
        services.AddHostedService(sp => sp.GetRequiredService<LockoutBoard>());

        services.TryAddSingleton<AdminKeyStore>();
        services.TryAddSingleton<AdminAuthenticator>();
        services.TryAddSingleton<AuditLog>();
        // Run on a schedule by each host: AuditRetentionService on Kestrel, a timer function on Functions.
        services.TryAddSingleton<AuditRetention>();
        services.TryAddSingleton<IdempotencyStore>();
        services.TryAddSingleton<KeyRequests>();
        services.TryAddSingleton<AdminHandler>();

        services.TryAddSingleton<ISecretSource>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<FuncProxy.FuncProxyOptions>>().Value;
            if (options.KeyVault.VaultUri is { } vaultUri)
            {
                var client = sp.GetService<SecretClient>()
                    ?? new SecretClient(vaultUri, FuncProxy.FuncProxyTables.CreateCredential(options.Storage.ManagedIdentityClientId));
                return new KeyVaultSecretSource(client);
            }
            return new ConfigurationSecretSource(sp.GetRequiredService<IOptionsMonitor<FuncProxy.FuncProxyOptions>>());
        });
        services.TryAddSingleton<SecretCache>();

        services.TryAddSingleton(sp => new LimiterClock(
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<IOptions<FuncProxy.FuncProxyOptions>>().Value.Limits.UseStorageClock));
        services.TryAddSingleton<CounterStore>();
        services.TryAddSingleton<KeyRateLimiter>();
        services.TryAddSingleton<RequestLimiter>();
        services.TryAddSingleton<UsageMeter>();
        // The writer of the usage table is also its one reader, so its row layout lives in one place.
        services.TryAddSingleton<IUsageReader>(sp => sp.GetRequiredService<UsageMeter>());
        services.AddHostedService(sp => sp.GetRequiredService<UsageMeter>());

        services.TryAddSingleton<UpstreamCatalog>();
        services.TryAddSingleton<UpstreamInvoker>();
        services.TryAddSingleton<FuncProxy.Spend.PriceTable>();
        // Entra ID tokens for backends with Auth ManagedIdentity; tests put a counting credential here.
        services.TryAddSingleton<BackendCredentialFactory>(_ => FuncProxy.FuncProxyTables.CreateCredential);
        services.TryAddSingleton<BackendTokens>();
        services.TryAddSingleton<BreakerBoard>();
        services.AddHostedService(sp => sp.GetRequiredService<BreakerBoard>());
        services.TryAddSingleton<PoolForwarder>();
        // ASP.NET Core's CORS service evaluates each upstream's policy; no CORS middleware: the proxy route answers itself.
        services.AddCors();
        services.TryAddSingleton<CrossOrigin>();
        services.TryAddSingleton<ProxyHandler>();
        services.TryAddSingleton<HealthHandler>();
        return services;
    }
}
