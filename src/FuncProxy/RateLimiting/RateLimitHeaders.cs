using System.Globalization;
using System.Runtime.CompilerServices;

namespace FuncProxy.RateLimiting;

/// <summary>
/// <c>RateLimit-Policy</c> and <c>RateLimit</c> as draft-ietf-httpapi-ratelimit-headers-11 defines them (structured-field
/// lists of policy items): <c>"rpm";q=60;w=60</c> and <c>"rpm";r=12;t=31</c>. Token policies carry the vendor parameter
/// <c>funcproxy-unit="tokens"</c>, since the draft's quota units registry knows only requests, bytes and concurrency; money
/// budgets carry <c>funcproxy-unit="usd-micros"</c> (quota and remaining in micro-dollars: <c>q=5000000</c> is 5 USD).
/// Per-model policies are named <c>{policy}@{model pattern}</c>, the pattern in a key-safe form.
/// </summary>
internal static class RateLimitHeaders
{
    public const string Policy = "RateLimit-Policy";
    public const string Limit = "RateLimit";

    // A key's policies are one array per key record (KeyPolicies), so their header is formatted once per record; only a
    // calendar month's w changes with the date, and those lists are formatted every time.
    private static readonly ConditionalWeakTable<IReadOnlyList<LimitPolicy>, string> PolicyHeaders = new();

    // Both headers are set on every limited call: RateLimit-Policy comes from the cache above, RateLimit is built in a
    // stack buffer, so its string is its only allocation.
    public static string FormatPolicies(IReadOnlyList<LimitPolicy> policies, DateTimeOffset now)
    {
        if (PolicyHeaders.TryGetValue(policies, out var cached))
        {
            return cached;
        }
        var header = Format(policies, now);
        for (var i = 0; i < policies.Count; i++)
        {
            if (policies[i].Window.IsCalendarMonth)
            {
                return header;
            }
        }
        PolicyHeaders.TryAdd(policies, header);
        return header;
    }

    private static string Format(IReadOnlyList<LimitPolicy> policies, DateTimeOffset now)
    {
        var s = new DefaultInterpolatedStringHandler(0, 0, CultureInfo.InvariantCulture, stackalloc char[256]);
        for (var i = 0; i < policies.Count; i++)
        {
            var p = policies[i];
            if (i > 0)
            {
                s.AppendLiteral(", ");
            }
            s.AppendLiteral("\"");
            s.AppendFormatted(p.Name);
            s.AppendLiteral("\";q=");
            s.AppendFormatted(p.Limit);
            s.AppendLiteral(";w=");
            s.AppendFormatted(p.Window.Seconds(p.Window.StartOf(now)));
            if (p.Unit == PolicyUnit.Tokens)
            {
                s.AppendLiteral(";funcproxy-unit=\"tokens\"");
            }
            else if (p.Unit == PolicyUnit.MicroUsd)
            {
                s.AppendLiteral(";funcproxy-unit=\"usd-micros\"");
            }
        }
        return s.ToStringAndClear();
    }

    public static string FormatState(ReadOnlySpan<PolicyDecision> decisions, DateTimeOffset now)
    {
        var s = new DefaultInterpolatedStringHandler(0, 0, CultureInfo.InvariantCulture, stackalloc char[256]);
        for (var i = 0; i < decisions.Length; i++)
        {
            var d = decisions[i];
            if (i > 0)
            {
                s.AppendLiteral(", ");
            }
            var reset = (long)Math.Ceiling(Math.Max(0, (d.WindowEnd - now).TotalSeconds));
            // A refused request policy has nothing left; a refused token policy may have fewer tokens left than the call wanted.
            var remaining = d.Verdict == Verdict.Refused && d.Policy.Unit == PolicyUnit.Requests ? 0 : Math.Max(0, d.Remaining);
            s.AppendLiteral("\"");
            s.AppendFormatted(d.Policy.Name);
            s.AppendLiteral("\";r=");
            s.AppendFormatted(remaining);
            s.AppendLiteral(";t=");
            s.AppendFormatted(reset);
        }
        return s.ToStringAndClear();
    }
}
