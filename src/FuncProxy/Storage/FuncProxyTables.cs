using Azure;
using Azure.Core;
using Azure.Data.Tables;
using Azure.Identity;
using Microsoft.Extensions.Options;

namespace FuncProxy;

/// <summary>
/// The engine's tables (<c>keys</c>, <c>audit</c>, <c>usage</c>, <c>breakers</c>, <c>lockouts</c>) on one shared <see cref="TableServiceClient"/>.
/// Each table is created on first use, once per process; a failed creation is tried again on the next use.
/// </summary>
public sealed class FuncProxyTables
{
    public const string Keys = "keys";
    public const string Audit = "audit";
    public const string Usage = "usage";

    /// <summary>Opened circuit breakers, shared between instances (PartitionKey = upstream, RowKey = backend).</summary>
    public const string Breakers = "breakers";

    /// <summary>Token-to-key rules made through the management API or the CLI (docs/entra-id-clients.md).</summary>
    public const string TokenRules = "tokenrules";

    /// <summary>Per-IP lockouts in force, shared between instances (PartitionKey = scope, RowKey = address).</summary>
    public const string Lockouts = "lockouts";

    private readonly TableServiceClient _service;
    private readonly string _prefix;
    private readonly Dictionary<string, EnsuredTable> _tables;

    public FuncProxyTables(IOptions<FuncProxyOptions> options)
        : this(CreateServiceClient(options?.Value.Storage ?? throw new ArgumentNullException(nameof(options))), options.Value.Storage.TablePrefix)
    {
    }

    public FuncProxyTables(TableServiceClient service, string? prefix)
    {
        ArgumentNullException.ThrowIfNull(service);
        _service = service;
        _prefix = prefix ?? "";
        _tables = new(StringComparer.Ordinal)
        {
            [Keys] = new(service.GetTableClient(_prefix + Keys)),
            [Audit] = new(service.GetTableClient(_prefix + Audit)),
            [Usage] = new(service.GetTableClient(_prefix + Usage)),
            [Breakers] = new(service.GetTableClient(_prefix + Breakers)),
            [TokenRules] = new(service.GetTableClient(_prefix + TokenRules)),
            [Lockouts] = new(service.GetTableClient(_prefix + Lockouts)),
        };
    }

    public TableServiceClient Service => _service;

    public string TableName(string table) => _prefix + table;

    public ValueTask<TableClient> GetKeysAsync(CancellationToken cancellationToken = default) => _tables[Keys].GetAsync(cancellationToken);

    public ValueTask<TableClient> GetAuditAsync(CancellationToken cancellationToken = default) => _tables[Audit].GetAsync(cancellationToken);

    public ValueTask<TableClient> GetUsageAsync(CancellationToken cancellationToken = default) => _tables[Usage].GetAsync(cancellationToken);

    public ValueTask<TableClient> GetBreakersAsync(CancellationToken cancellationToken = default) => _tables[Breakers].GetAsync(cancellationToken);

    public ValueTask<TableClient> GetTokenRulesAsync(CancellationToken cancellationToken = default) => _tables[TokenRules].GetAsync(cancellationToken);

    public ValueTask<TableClient> GetLockoutsAsync(CancellationToken cancellationToken = default) => _tables[Lockouts].GetAsync(cancellationToken);

    /// <summary>
    /// Forgets that <paramref name="table"/> was created, so the next use creates it again: for a table that answered
    /// <c>TableNotFound</c> (deleted under us, or an emulator restarted empty).
    /// </summary>
    internal void Forget(string table) => _tables[table].Forget();

    /// <summary>
    /// Whether <paramref name="exception"/> is what a call to storage fails with when storage is unreachable or refuses:
    /// the SDK's <see cref="RequestFailedException"/>, the network's errors, a timeout or cancellation, a credential that
    /// cannot get a token, and the <see cref="AggregateException"/> the SDK's retry policy throws once its retries are spent.
    /// </summary>
    public static bool IsStorageFailure(Exception exception) => exception switch
    {
        RequestFailedException or HttpRequestException or OperationCanceledException or IOException or TimeoutException
            or AuthenticationFailedException or CredentialUnavailableException => true,
        AggregateException a => a.InnerExceptions.Count > 0 && a.InnerExceptions.All(IsStorageFailure),
        _ => false,
    };

    /// <summary>One line saying why storage failed, without a stack trace: the innermost, last error's message.</summary>
    public static string Describe(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        while (exception is AggregateException { InnerExceptions.Count: > 0 } a)
        {
            exception = a.InnerExceptions[^1];
        }
        var message = exception.Message;
        var end = message.IndexOfAny(['\r', '\n']);
        return end < 0 ? message : message[..end];
    }

    public static TableServiceClient CreateServiceClient(StorageOptions storage)
    {
        ArgumentNullException.ThrowIfNull(storage);
        var clientOptions = new TableClientOptions();
        // The limiter bounds its own retries; the SDK's default of several retries with back-off would hide storage trouble for seconds.
        clientOptions.Retry.MaxRetries = 2;
        clientOptions.Retry.NetworkTimeout = TimeSpan.FromSeconds(10);
        // The endpoint with an identity wins when both are set: an operator pointing the CLI at the cloud table
        // (FuncProxy__Storage__TableServiceUri) must not be sent to the local Azurite of appsettings.json.
        if (storage.TableServiceUri is not null)
        {
            return new TableServiceClient(storage.TableServiceUri, CreateCredential(storage.ManagedIdentityClientId), clientOptions);
        }
        if (string.IsNullOrWhiteSpace(storage.ConnectionString))
        {
            throw new InvalidOperationException("FuncProxy:Storage needs ConnectionString or TableServiceUri.");
        }
        return new TableServiceClient(storage.ConnectionString, clientOptions);
    }

    internal static TokenCredential CreateCredential(string? managedIdentityClientId) =>
        new DefaultAzureCredential(new DefaultAzureCredentialOptions { ManagedIdentityClientId = managedIdentityClientId });

    private sealed class EnsuredTable(TableClient client)
    {
        private Task? _created;

        public ValueTask<TableClient> GetAsync(CancellationToken cancellationToken)
        {
            var created = _created;
            if (created is { IsCompletedSuccessfully: true })
            {
                return ValueTask.FromResult(client);
            }
            return SlowAsync(cancellationToken);
        }

        private async ValueTask<TableClient> SlowAsync(CancellationToken cancellationToken)
        {
            var created = _created;
            if (created is null || created.IsFaulted || created.IsCanceled)
            {
                created = CreateAsync();
                _created = created;
            }
            await created.WaitAsync(cancellationToken).ConfigureAwait(false);
            return client;
        }

        public void Forget() => _created = null;

        private async Task CreateAsync()
        {
            try
            {
                await client.CreateIfNotExistsAsync().ConfigureAwait(false);
            }
            catch (RequestFailedException e) when (e.Status == 409)
            {
                // Created by another instance at the same moment (or being deleted): either way it is there to use or will say so on use.
            }
        }
    }
}
