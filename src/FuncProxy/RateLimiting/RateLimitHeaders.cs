using System.Globalization;
using System.Text;

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

    public static string FormatPolicies(IReadOnlyList<LimitPolicy> policies, DateTimeOffset now)
    {
        var s = new StringBuilder();
        foreach (var p in policies)
        {
            if (s.Length > 0)
            {
                s.Append(", ");
            }
            s.Append(CultureInfo.InvariantCulture, $"\"{p.Name}\";q={p.Limit};w={p.Window.Seconds(p.Window.StartOf(now))}");
            if (p.Unit == PolicyUnit.Tokens)
            {
                s.Append(";funcproxy-unit=\"tokens\"");
            }
            else if (p.Unit == PolicyUnit.MicroUsd)
            {
                s.Append(";funcproxy-unit=\"usd-micros\"");
            }
        }
        return s.ToString();
    }

    public static string FormatState(IReadOnlyList<PolicyDecision> decisions, DateTimeOffset now)
    {
        var s = new StringBuilder();
        foreach (var d in decisions)
        {
            if (s.Length > 0)
            {
                s.Append(", ");
            }
            var reset = (long)Math.Ceiling(Math.Max(0, (d.WindowEnd - now).TotalSeconds));
            // A refused request policy has nothing left; a refused token policy may have fewer tokens left than the call wanted.
            var remaining = d.Verdict == Verdict.Refused && d.Policy.Unit == PolicyUnit.Requests ? 0 : Math.Max(0, d.Remaining);
            s.Append(CultureInfo.InvariantCulture, $"\"{d.Policy.Name}\";r={remaining};t={reset}");
        }
        return s.ToString();
    }
}
