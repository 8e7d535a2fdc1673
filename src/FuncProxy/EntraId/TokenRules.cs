using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.EntraId;

/// <summary>
/// The token-to-key rules in force: those in <c>FuncProxy:ClientTokens:Rules</c> first, then those in the <c>tokenrules</c>
/// table (<see cref="TokenRuleStore"/>), oldest first. The table is read whole once per
/// <see cref="ClientTokenOptions.RuleRefreshInterval"/> per instance, in the background while the last read is served, so a
/// call never waits for storage except the first on an instance; a change made through this instance's management API is
/// in force at once (<see cref="ReloadAsync"/>), one made elsewhere (another instance, the CLI) within the interval. While
/// the table cannot be read the last rules stay in force.
/// </summary>
public sealed partial class TokenRules
{
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TokenRuleStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private Snapshot? _snapshot;
    private Task? _refresh;

    public TokenRules(IOptionsMonitor<FuncProxyOptions> options, TokenRuleStore store, TimeProvider time, ILogger<TokenRules> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options;
        _store = store;
        _time = time;
        _logger = logger;
    }

    /// <summary>The rules in force, in precedence order within each kind.</summary>
    public async ValueTask<TokenRuleSet> CurrentAsync(CancellationToken cancellationToken)
    {
        var options = _options.CurrentValue.ClientTokens;
        var snapshot = Volatile.Read(ref _snapshot);
        if (snapshot is null)
        {
            await RefreshAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            snapshot = Volatile.Read(ref _snapshot)!;
        }
        else if (_time.GetElapsedTime(snapshot.ReadStartedAt) >= options.RuleRefreshInterval)
        {
            _ = RefreshAsync();
        }
        if (!ReferenceEquals(snapshot.Options, options))
        {
            // The configuration changed (reloadable sources): rebuild with the same stored rules.
            snapshot = snapshot with { Options = options, Set = Combine(options, snapshot.Stored) };
            Volatile.Write(ref _snapshot, snapshot);
        }
        return snapshot.Set;
    }

    /// <summary>Reads the table now and puts what it holds in force on this instance (after a change made here).</summary>
    public async Task ReloadAsync(CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        var stored = await _store.ListAsync(cancellationToken).ConfigureAwait(false);
        Publish(stored, started);
    }

    private Task RefreshAsync()
    {
        lock (_gate)
        {
            return _refresh ??= RefreshCoreAsync();
        }
    }

    private async Task RefreshCoreAsync()
    {
        // Yield first so the caller's lock is released before any I/O starts.
        await Task.Yield();
        var started = _time.GetTimestamp();
        try
        {
            Publish(await _store.ListAsync(CancellationToken.None).ConfigureAwait(false), started);
        }
        catch (Exception e) when (FuncProxyTables.IsStorageFailure(e))
        {
            // Keep the last rules (none on a first read) and try again after the interval; configured rules always apply.
            Log.RefreshFailed(_logger, FuncProxyTables.Describe(e));
            Publish(Volatile.Read(ref _snapshot)?.Stored ?? [], started);
        }
        finally
        {
            lock (_gate)
            {
                _refresh = null;
            }
        }
    }

    /// <summary>Puts a read in force unless a read that started later is in force already.</summary>
    private void Publish(IReadOnlyList<TokenRule> stored, long readStartedAt)
    {
        var options = _options.CurrentValue.ClientTokens;
        lock (_gate)
        {
            if (_snapshot is { } current && current.ReadStartedAt > readStartedAt)
            {
                return;
            }
            Volatile.Write(ref _snapshot, new Snapshot(stored, readStartedAt, options, Combine(options, stored)));
        }
    }

    private static TokenRuleSet Combine(ClientTokenOptions options, IReadOnlyList<TokenRule> stored) =>
        new(FromOptions(options.Rules).Concat(stored));

    /// <summary>The rules of <c>FuncProxy:ClientTokens:Rules</c> (validated at start: each has a key id and exactly one matcher).</summary>
    public static IEnumerable<TokenRule> FromOptions(IEnumerable<TokenRuleOptions> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        foreach (var rule in rules)
        {
            if (Matcher(rule) is ({ } match, { } value) && rule.KeyId is { } keyId)
            {
                yield return new TokenRule(match, value.Trim(), keyId.Trim());
            }
        }
    }

    /// <summary>The one matcher a configured rule sets, or null when it sets none or several.</summary>
    internal static (TokenMatch Match, string Value)? Matcher(TokenRuleOptions rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        (TokenMatch, string?)[] all = [(TokenMatch.ObjectId, rule.ObjectId), (TokenMatch.AppId, rule.AppId), (TokenMatch.AppRole, rule.AppRole), (TokenMatch.Group, rule.Group)];
        var set = all.Where(m => !string.IsNullOrWhiteSpace(m.Item2)).ToArray();
        return set.Length == 1 ? (set[0].Item1, set[0].Item2!) : null;
    }

    private sealed record Snapshot(IReadOnlyList<TokenRule> Stored, long ReadStartedAt, ClientTokenOptions Options, TokenRuleSet Set);

    private static partial class Log
    {
        [LoggerMessage(EventId = 2020, Level = LogLevel.Warning, Message = "Reading the token rules table failed ({Reason}); the last rules read stay in force.")]
        public static partial void RefreshFailed(ILogger logger, string reason);
    }
}
