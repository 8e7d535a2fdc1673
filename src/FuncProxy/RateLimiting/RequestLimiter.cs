using System.Globalization;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.RateLimiting;

/// <summary>An admitted call: its lease across the key's policies (with the token reservation to settle).</summary>
public sealed class Admission
{
    internal static readonly Admission Unlimited = new(null);

    internal Admission(KeyRateLimiter.KeyLease? lease) => Lease = lease;

    public KeyRateLimiter.KeyLease? Lease { get; }

    public long ReservedTokens => Lease?.ReservedTokens ?? 0;

    /// <summary>Settles the token reservation with the usage the upstream reported (see <see cref="KeyRateLimiter.KeyLease.SettleTokens"/>).</summary>
    public void SettleTokens(long usedTokens) => Lease?.SettleTokens(usedTokens);
}

/// <summary>
/// Step 4 of the request path: applies the key's policies to an HTTP call. Reserves the expected tokens, sets
/// <c>RateLimit-Policy</c> and <c>RateLimit</c> on the response, and on refusal answers 429 (or 503 when storage is down
/// and <see cref="StorageFailureMode.Closed"/> applies) itself, as problem+json naming the policy.
/// </summary>
public sealed partial class RequestLimiter
{
    private readonly KeyRateLimiter _limiter;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly ILogger _logger;

    public RequestLimiter(KeyRateLimiter limiter, IOptionsMonitor<FuncProxyOptions> options, ILogger<RequestLimiter> logger)
    {
        ArgumentNullException.ThrowIfNull(limiter);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        _limiter = limiter;
        _options = options;
        _logger = logger;
    }

    /// <summary>
    /// The admission, or null when the call was refused (the response is written) or the client went away. A body that
    /// crosses the upstream's limit while it is read ahead throws <see cref="RequestBodyTooLargeException"/> for the caller's 413.
    /// </summary>
    public async ValueTask<Admission?> AdmitAsync(HttpContext context, KeyRecord key, UpstreamRoute route)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(route);
        var policies = _limiter.PoliciesFor(key);
        if (policies.Count == 0)
        {
            return Admission.Unlimited;
        }
        KeyRateLimiter.KeyLease lease;
        try
        {
            var tokens = policies.Any(p => p.Unit == PolicyUnit.Tokens)
                ? await TokenEstimate.ForRequestAsync(context.Request, _options.CurrentValue.Limits, context.RequestAborted).ConfigureAwait(false)
                : 0;
            if (policies.FirstOrDefault(p => p.Unit == PolicyUnit.Tokens && tokens > p.Limit) is { } never)
            {
                await RefuseNeverAdmissibleAsync(context, key, route, policies, never, tokens).ConfigureAwait(false);
                return null;
            }
            lease = (KeyRateLimiter.KeyLease)await _limiter.AcquireAsync(new LimitRequest(key, tokens), 1, context.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return null;
        }
        catch (Exception e) when (e is (IOException or BadHttpRequestException) and not RequestBodyTooLargeException)
        {
            // The body could not be read ahead: the client's problem, and nothing was taken yet.
            await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "request_body_error", "Bad Request",
                "The request body could not be read.").ConfigureAwait(false);
            return null;
        }

        var now = _limiter.Clock.UtcNow;
        var policyHeader = RateLimitHeaders.FormatPolicies(policies, now);
        var stateHeader = RateLimitHeaders.FormatState(lease.Decisions, now);
        if (lease.IsAcquired)
        {
            context.Response.Headers[RateLimitHeaders.Policy] = policyHeader;
            context.Response.Headers[RateLimitHeaders.Limit] = stateHeader;
            return new Admission(lease);
        }

        var retryAfter = lease.RetryAfter < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : lease.RetryAfter;
        var seconds = ((long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        var milliseconds = ((long)Math.Ceiling(retryAfter.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture);
        KeyValuePair<string, string>[] headers =
        [
            new(RateLimitHeaders.Policy, policyHeader),
            new(RateLimitHeaders.Limit, stateHeader),
            new("Retry-After", seconds),
            new("retry-after-ms", milliseconds),
        ];
        var policy = lease.RefusingPolicy!;
        if (lease.StorageUnavailable)
        {
            Log.Unavailable(_logger, key.Id, policy);
            await Problem.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "rate_limiter_unavailable", "Service Unavailable",
                "The gateway cannot check this key's rate limits right now. Try again shortly.",
                new Dictionary<string, object?> { ["policy"] = policy }, headers).ConfigureAwait(false);
            return null;
        }
        var quota = lease.Refusal!.Value.Policy.IsQuota;
        Log.Refused(_logger, key.Id, policy, route.Name);
        await Problem.WriteAsync(context, StatusCodes.Status429TooManyRequests, quota ? "quota_exceeded" : "rate_limited", "Too Many Requests",
            $"This API key has reached its '{policy}' limit. Retry after {seconds} s.",
            new Dictionary<string, object?> { ["policy"] = policy, ["retryAfterSeconds"] = long.Parse(seconds, CultureInfo.InvariantCulture) },
            headers).ConfigureAwait(false);
        return null;
    }

    /// <summary>
    /// The call reserves more tokens than a whole window of <paramref name="policy"/> allows, so no wait would ever admit
    /// it: 413 with no <c>Retry-After</c> (SDKs and retry policies retry 429 and 5xx, not 413), nothing taken from any
    /// policy. The client has to ask for fewer tokens (<c>max_tokens</c>, or a shorter prompt when it sends none).
    /// </summary>
    private async Task RefuseNeverAdmissibleAsync(HttpContext context, KeyRecord key, UpstreamRoute route, IReadOnlyList<LimitPolicy> policies, LimitPolicy policy, long tokens)
    {
        Log.NeverAdmissible(_logger, key.Id, policy.Name, tokens, policy.Limit, route.Name);
        var window = policy.IsQuota ? "quota" : "limit";
        await Problem.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "tokens_exceed_limit", "Content Too Large",
            $"This call reserves {tokens} tokens, more than this API key's '{policy.Name}' {window} allows in a whole window ({policy.Limit}); it can never be admitted. Ask for fewer tokens (max_tokens).",
            new Dictionary<string, object?> { ["policy"] = policy.Name, ["limitTokens"] = policy.Limit, ["requestedTokens"] = tokens },
            [new(RateLimitHeaders.Policy, RateLimitHeaders.FormatPolicies(policies, _limiter.Clock.UtcNow))]).ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3012, Level = LogLevel.Information, Message = "Key {KeyId} refused with 413: the call reserves {Tokens} tokens, more than policy {Policy} allows per window ({Limit}), on upstream {Upstream}.")]
        public static partial void NeverAdmissible(ILogger logger, string keyId, string policy, long tokens, long limit, string upstream);

        [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "Key {KeyId} refused by policy {Policy} on upstream {Upstream}.")]
        public static partial void Refused(ILogger logger, string keyId, string policy, string upstream);

        [LoggerMessage(EventId = 3011, Level = LogLevel.Warning, Message = "Key {KeyId} refused with 503: rate-limit storage is down and the failure mode is Closed (policy {Policy}).")]
        public static partial void Unavailable(ILogger logger, string keyId, string policy);
    }
}
