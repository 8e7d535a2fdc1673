namespace FuncProxy.Backends;

/// <summary>
/// An upstream's backends and the choice among them: the best (lowest) priority that has a backend available, then by
/// weight among its backends, preferring those whose rate-limit headers did not say they are out of room. A backend
/// whose breaker is open, or already tried for this call, is passed over.
/// </summary>
public sealed class BackendPool
{
    private readonly Func<DateTimeOffset> _now;

    internal BackendPool(IReadOnlyList<Backend> backends, Func<DateTimeOffset> now)
    {
        Backends = backends;
        _now = now;
    }

    /// <summary>By priority, then name.</summary>
    public IReadOnlyList<Backend> Backends { get; }

    /// <summary>The time breakers are judged by (this instance's clock).</summary>
    public DateTimeOffset Now => _now();

    public Backend? Find(string name) => Backends.FirstOrDefault(b => string.Equals(b.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>True when a backend other than those in <paramref name="tried"/> may take a call now.</summary>
    internal bool HasAnother(IReadOnlyCollection<Backend> tried)
    {
        var now = _now();
        // Index loops: a foreach over the IReadOnlyList would box its enumerator on every call.
        for (var i = 0; i < Backends.Count; i++)
        {
            var b = Backends[i];
            if (!tried.Contains(b) && b.Breaker.OpenUntil(now) is null)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The soonest time a backend's breaker closes (for the client's Retry-After when none is available).</summary>
    internal DateTimeOffset SoonestReopening()
    {
        var now = _now();
        return Backends.Select(b => b.Breaker.OpenUntil(now) ?? now).Min();
    }

    /// <summary>
    /// Picks the backend for the next attempt and claims its breaker (as a probe when it is half-open), or null when every
    /// backend not yet tried is unavailable.
    /// </summary>
    internal Backend? Choose(IReadOnlyCollection<Backend> tried, out bool isProbe)
    {
        var now = _now();
        // A few rounds: another call may take a half-open backend's probe slot between the look and the claim.
        for (var round = 0; round < 4; round++)
        {
            var candidate = Pick(tried, now);
            if (candidate is null)
            {
                break;
            }
            if (candidate.Breaker.TryEnter(now, out isProbe))
            {
                return candidate;
            }
        }
        isProbe = false;
        return null;
    }

    private Backend? Pick(IReadOnlyCollection<Backend> tried, DateTimeOffset now)
    {
        Backend? only = null;
        List<Backend>? group = null;
        int? priority = null;
        for (var i = 0; i < Backends.Count; i++)
        {
            var backend = Backends[i];
            if (priority is { } p && backend.Priority != p)
            {
                break; // sorted by priority: the best one with an available backend decides
            }
            if (tried.Contains(backend) || backend.Breaker.OpenUntil(now) is not null)
            {
                continue;
            }
            priority = backend.Priority;
            if (only is null)
            {
                only = backend;
            }
            else
            {
                group ??= [only];
                group.Add(backend);
            }
        }
        if (group is null)
        {
            return only;
        }
        return ByWeight(WithRoom(group, now) is { Count: > 0 } withRoom ? withRoom : group);
    }

    // Apart from Pick: a lambda there capturing 'now' would allocate its closure on every call, one backend or many.
    private static List<Backend> WithRoom(List<Backend> group, DateTimeOffset now) => group.Where(b => !b.HasNoRoom(now)).ToList();

    private static Backend ByWeight(List<Backend> backends)
    {
        var total = backends.Sum(b => b.Weight);
        // Load spreading only; RandomNumberGenerator keeps CA5394 (AnalysisModeSecurity) satisfied without a suppression.
        var ticket = System.Security.Cryptography.RandomNumberGenerator.GetInt32(total);
        foreach (var backend in backends)
        {
            ticket -= backend.Weight;
            if (ticket < 0)
            {
                return backend;
            }
        }
        return backends[^1];
    }
}
