using System.Collections.Concurrent;
using Azure.Core;
using Microsoft.Extensions.Logging;

namespace FuncProxy.Backends;

/// <summary>Makes the <see cref="TokenCredential"/> backend tokens are asked from, per user-assigned client id (null: the default identity).</summary>
public delegate TokenCredential BackendCredentialFactory(string? managedIdentityClientId);

/// <summary>
/// Entra ID access tokens for <see cref="BackendAuth.ManagedIdentity"/> backends, per identity and scope, in memory. The
/// credential is asked once per token lifetime: a token is served until its refresh time (<see cref="AccessToken.RefreshOn"/>,
/// else 5 minutes before it expires, or halfway for short-lived tokens), then one background refresh (single flight) replaces
/// it while the old one is still served; only a caller with no valid token waits, and callers waiting together share one request.
/// A failed refresh is retried no more than every <see cref="RetryAfterFailure"/> while the old token lasts.
/// Azure.Core's <c>BearerTokenAuthenticationPolicy</c> does the same inside an Azure SDK pipeline, but forwarding goes
/// through YARP's invoker, not an Azure pipeline, and the policy's cache is not usable on its own: hence this small cache.
/// </summary>
public sealed partial class BackendTokens
{
    internal static readonly TimeSpan RetryAfterFailure = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan RefreshBeforeExpiry = TimeSpan.FromMinutes(5);
    // A token this close to its expiry is not handed out: the upstream call itself takes time.
    private static readonly TimeSpan ExpiryMargin = TimeSpan.FromSeconds(30);

    private readonly BackendCredentialFactory _factory;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, TokenCredential> _credentials = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<(string? ClientId, string Scope), Entry> _entries = new();
    private long _credentialCalls;

    public BackendTokens(BackendCredentialFactory factory, TimeProvider time, ILogger<BackendTokens> logger)
    {
        ArgumentNullException.ThrowIfNull(factory);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _factory = factory;
        _time = time;
        _logger = logger;
    }

    /// <summary>Tokens asked from the credential so far: one per token lifetime and identity and scope, never one per call.</summary>
    public long CredentialCalls => Interlocked.Read(ref _credentialCalls);

    /// <summary>A valid token for <paramref name="scope"/> as <paramref name="clientId"/>.</summary>
    /// <exception cref="BackendTokenUnavailableException">No valid token is cached and the credential failed.</exception>
    public ValueTask<string> GetAsync(string? clientId, string scope, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(scope);
        var entry = _entries.GetOrAdd((clientId, scope), static _ => new Entry());
        var now = _time.GetUtcNow();
        Task<AccessToken> pending;
        lock (entry)
        {
            if (entry.Current is { } current && current.ExpiresOn - ExpiryMargin > now && entry.RejectedToken != current.Token)
            {
                if (now >= entry.RefreshAt && entry.Pending is null && now >= entry.RetryAt)
                {
                    entry.Pending = RefreshAsync(clientId, scope, entry);
                }
                return ValueTask.FromResult(current.Token);
            }
            pending = entry.Pending ??= RefreshAsync(clientId, scope, entry);
        }
        return AwaitAsync(clientId, scope, pending, cancellationToken);
    }

    /// <summary>The backend answered 401 to <paramref name="token"/>: the next caller gets a fresh one.</summary>
    public void Invalidate(string? clientId, string scope, string token)
    {
        if (_entries.TryGetValue((clientId, scope), out var entry))
        {
            lock (entry)
            {
                if (entry.Current?.Token == token)
                {
                    entry.RejectedToken = token;
                }
            }
        }
    }

    private static async ValueTask<string> AwaitAsync(string? clientId, string scope, Task<AccessToken> pending, CancellationToken cancellationToken)
    {
        try
        {
            return (await pending.WaitAsync(cancellationToken).ConfigureAwait(false)).Token;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw new BackendTokenUnavailableException(clientId, scope, e);
        }
    }

    private async Task<AccessToken> RefreshAsync(string? clientId, string scope, Entry entry)
    {
        await Task.Yield();
        try
        {
            var credential = _credentials.GetOrAdd(clientId ?? "", id => _factory(id.Length == 0 ? null : id));
            Interlocked.Increment(ref _credentialCalls);
            var token = await credential.GetTokenAsync(new TokenRequestContext([scope]), CancellationToken.None).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            var lifetime = token.ExpiresOn - now;
            var refreshAt = token.RefreshOn ?? (lifetime > 2 * RefreshBeforeExpiry ? token.ExpiresOn - RefreshBeforeExpiry : now + (lifetime / 2));
            lock (entry)
            {
                entry.Current = token;
                entry.RefreshAt = refreshAt;
                entry.RejectedToken = null;
                entry.Pending = null;
            }
            Log.TokenAcquired(_logger, scope, token.ExpiresOn);
            return token;
        }
        catch (Exception e)
        {
            // The exception itself is not logged: identity errors can carry request details; its type is enough to act on.
            Log.TokenFailed(_logger, scope, e.GetType().Name);
            lock (entry)
            {
                entry.Pending = null;
                entry.RetryAt = _time.GetUtcNow() + RetryAfterFailure;
            }
            throw;
        }
    }

    private sealed class Entry
    {
        public AccessToken? Current;
        public DateTimeOffset RefreshAt;
        public DateTimeOffset RetryAt;
        public string? RejectedToken;
        public Task<AccessToken>? Pending;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2101, Level = LogLevel.Debug, Message = "Got an access token for scope {Scope}, valid until {ExpiresOn}.")]
        public static partial void TokenAcquired(ILogger logger, string scope, DateTimeOffset expiresOn);

        [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Getting an access token for scope {Scope} failed ({ErrorType}).")]
        public static partial void TokenFailed(ILogger logger, string scope, string errorType);
    }
}

/// <summary>No valid access token for a backend could be had.</summary>
public sealed class BackendTokenUnavailableException(string? clientId, string scope, Exception inner)
    : Exception($"No access token for scope '{scope}'{(clientId is null ? "" : $" as identity {clientId}")}.", inner)
{
    public string Scope { get; } = scope;
}
