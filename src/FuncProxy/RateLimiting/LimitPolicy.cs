using System.Runtime.CompilerServices;
using FuncProxy.Keys;

namespace FuncProxy.RateLimiting;

/// <summary>What a policy counts.</summary>
public enum PolicyUnit
{
    Requests,
    Tokens,

    /// <summary>Money, in micro-dollars (1 USD = 1,000,000): reserved at the call's most expensive outcome, settled at its real cost.</summary>
    MicroUsd,
}

/// <summary>
/// One limit on one key: at most <see cref="Limit"/> units per fixed <see cref="Window"/>. <see cref="Name"/> is what the
/// client sees in <c>RateLimit-Policy</c> and <c>RateLimit</c>, and part of the counter row's key.
/// </summary>
public sealed record LimitPolicy(string Name, PolicyUnit Unit, long Limit, PolicyWindow Window)
{
    /// <summary>Quotas (a day or longer) are reported as <c>quota_exceeded</c>, shorter windows as <c>rate_limited</c>.</summary>
    public bool IsQuota => Window.IsCalendarMonth || Window.Length >= TimeSpan.FromDays(1);
}

/// <summary>A fixed window aligned to the Unix epoch (UTC), or a UTC calendar month.</summary>
public sealed class PolicyWindow
{
    public static readonly PolicyWindow Second = new(TimeSpan.FromSeconds(1));
    public static readonly PolicyWindow Minute = new(TimeSpan.FromMinutes(1));
    public static readonly PolicyWindow Hour = new(TimeSpan.FromHours(1));
    public static readonly PolicyWindow Day = new(TimeSpan.FromDays(1));
    public static readonly PolicyWindow Month = new(null);

    private PolicyWindow(TimeSpan? length) => Length = length ?? TimeSpan.Zero;

    /// <summary>A window of whole seconds (tests and benchmarks use short ones).</summary>
    public static PolicyWindow Of(TimeSpan length)
    {
        if (length < TimeSpan.FromSeconds(1) || length.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "A window is a whole number of seconds.");
        }
        return new PolicyWindow(length);
    }

    /// <summary>Zero for <see cref="Month"/>.</summary>
    public TimeSpan Length { get; }

    public bool IsCalendarMonth => Length == TimeSpan.Zero;

    public DateTimeOffset StartOf(DateTimeOffset now)
    {
        var utc = now.ToUniversalTime();
        if (IsCalendarMonth)
        {
            return new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
        }
        return new DateTimeOffset(utc.UtcTicks - (utc.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) % Length.Ticks, TimeSpan.Zero);
    }

    public DateTimeOffset EndOf(DateTimeOffset start) => IsCalendarMonth ? start.AddMonths(1) : start + Length;

    /// <summary>The window length in seconds, as the <c>w</c> parameter of <c>RateLimit-Policy</c> states it (this month's, for months).</summary>
    public long Seconds(DateTimeOffset start) => (long)(EndOf(start) - start).TotalSeconds;
}

/// <summary>
/// The policies that apply to a key: configured defaults overridden field by field by the key's own <see cref="KeyLimits"/>.
/// Computed once per key record (records are immutable and replaced on refresh).
/// </summary>
public sealed class KeyPolicies
{
    private readonly ConditionalWeakTable<KeyRecord, LimitPolicy[]> _byRecord = new();
    private readonly ConditionalWeakTable<KeyRecord, System.Collections.Concurrent.ConcurrentDictionary<string, LimitPolicy[]>> _byModel = new();
    private readonly Func<LimitOptions> _defaults;
    // Made once: a lambda over 'this' written at the call would be a new delegate on every call.
    private readonly ConditionalWeakTable<KeyRecord, LimitPolicy[]>.CreateValueCallback _build;

    public KeyPolicies(Func<LimitOptions> defaults)
    {
        ArgumentNullException.ThrowIfNull(defaults);
        _defaults = defaults;
        _build = k => Build(k.Limits, _defaults());
    }

    public IReadOnlyList<LimitPolicy> For(KeyRecord key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return _byRecord.TryGetValue(key, out var policies) ? policies : _byRecord.GetValue(key, _build);
    }

    /// <summary>
    /// The key's policies plus those of its <see cref="KeyRecord.ModelLimits"/> entry for <paramref name="modelPattern"/>
    /// (see <see cref="ModelPatternFor"/>); their names end in <c>@</c> and the pattern in <see cref="ModelPattern.KeySafe"/> form.
    /// </summary>
    public IReadOnlyList<LimitPolicy> For(KeyRecord key, string? modelPattern)
    {
        ArgumentNullException.ThrowIfNull(key);
        var own = For(key);
        if (modelPattern is null || !key.ModelLimits.TryGetValue(modelPattern, out var limits))
        {
            return own;
        }
        var byModel = _byModel.GetValue(key, static _ => new(StringComparer.Ordinal));
        return byModel.TryGetValue(modelPattern, out var policies) ? policies : byModel.GetOrAdd(modelPattern, WithModelLimits(own, limits, modelPattern));
    }

    // Apart from For: a lambda there capturing its locals would allocate their closure on every call, found or not.
    private static LimitPolicy[] WithModelLimits(IReadOnlyList<LimitPolicy> own, KeyLimits limits, string pattern)
    {
        var suffix = "@" + ModelPattern.KeySafe(pattern);
        var extra = Build(limits, new LimitOptions()).Select(x => x with { Name = x.Name + suffix });
        return [.. own, .. extra];
    }

    /// <summary>The key's <see cref="KeyRecord.ModelLimits"/> pattern that applies to <paramref name="model"/>, or null.</summary>
    public static string? ModelPatternFor(KeyRecord key, string? model)
    {
        ArgumentNullException.ThrowIfNull(key);
        return model is null || key.ModelLimits.Count == 0 ? null : ModelPattern.BestMatch(key.ModelLimits.Keys, model);
    }

    internal static LimitPolicy[] Build(KeyLimits? own, LimitOptions defaults)
    {
        var policies = new List<LimitPolicy>(10);
        Add(policies, "rps", PolicyUnit.Requests, own?.RequestsPerSecond, defaults.RequestsPerSecond, PolicyWindow.Second);
        Add(policies, "rpm", PolicyUnit.Requests, own?.RequestsPerMinute, defaults.RequestsPerMinute, PolicyWindow.Minute);
        Add(policies, "rph", PolicyUnit.Requests, own?.RequestsPerHour, defaults.RequestsPerHour, PolicyWindow.Hour);
        Add(policies, "rpd", PolicyUnit.Requests, own?.RequestsPerDay, defaults.RequestsPerDay, PolicyWindow.Day);
        Add(policies, "rpmonth", PolicyUnit.Requests, own?.RequestsPerMonth, defaults.RequestsPerMonth, PolicyWindow.Month);
        Add(policies, "tpm", PolicyUnit.Tokens, own?.TokensPerMinute, defaults.TokensPerMinute, PolicyWindow.Minute);
        Add(policies, "tpd", PolicyUnit.Tokens, own?.TokensPerDay, defaults.TokensPerDay, PolicyWindow.Day);
        Add(policies, "tpmonth", PolicyUnit.Tokens, own?.TokensPerMonth, defaults.TokensPerMonth, PolicyWindow.Month);
        Add(policies, "usd-day", PolicyUnit.MicroUsd, own?.BudgetPerDayMicroUsd, null, PolicyWindow.Day);
        Add(policies, "usd-month", PolicyUnit.MicroUsd, own?.BudgetPerMonthMicroUsd, null, PolicyWindow.Month);
        return [.. policies];
    }

    private static void Add(List<LimitPolicy> policies, string name, PolicyUnit unit, long? own, long? fallback, PolicyWindow window)
    {
        // A key's 0 lifts the default for that key; any other value replaces it.
        var limit = own ?? fallback;
        if (limit is > 0)
        {
            policies.Add(new LimitPolicy(name, unit, limit.Value, window));
        }
    }
}
