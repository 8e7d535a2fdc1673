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

    /// <summary>The money reserved by the key's budgets for this call, in micro-dollars (0 without a budget).</summary>
    public long ReservedMicroUsd => Lease?.ReservedMicroUsd ?? 0;

    /// <summary>Settles the token reservation with the usage the upstream reported (see <see cref="KeyRateLimiter.KeyLease.SettleTokens"/>).</summary>
    public void SettleTokens(long usedTokens) => Lease?.SettleTokens(usedTokens);

    /// <summary>Settles tokens and money (null: cost unknown, the money reservation stands). See <see cref="KeyRateLimiter.KeyLease.Settle"/>.</summary>
    public void Settle(long usedTokens, long? usedMicroUsd) => Lease?.Settle(usedTokens, usedMicroUsd);
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
    /// The admission, or null when the call was refused (the response is written) or the client went away.
    /// <paramref name="body"/> is the read-ahead, <paramref name="model"/> the model sent (after aliases; null: none named)
    /// and <paramref name="price"/> its price on this upstream (null: unpriced).
    /// </summary>
    internal async ValueTask<Admission?> AdmitAsync(HttpContext context, KeyRecord key, UpstreamRoute route, CallBody body, string? model, Spend.ModelPrice? price)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(body);
        var pattern = KeyPolicies.ModelPatternFor(key, model);
        var policies = _limiter.PoliciesFor(key, pattern);
        if (policies.Count == 0)
        {
            return Admission.Unlimited;
        }
        var options = _options.CurrentValue;
        var tokens = policies.Any(p => p.Unit == PolicyUnit.Tokens) ? TokenEstimate.For(body, options.Limits) : 0;
        long cost = 0;
        if (policies.Any(p => p.Unit == PolicyUnit.MicroUsd))
        {
            if (price is not null)
            {
                cost = price.MostExpensiveMicroUsd(TokenEstimate.Input(body, options.Limits), TokenEstimate.MaxOutput(body, options.Limits));
            }
            else if (body.HasBody && options.Spend.UnpricedModels == UnpricedModelPolicy.Refuse)
            {
                Log.Unpriced(_logger, key.Id, model ?? "(none)", route.Name);
                await Problem.WriteAsync(context, StatusCodes.Status403Forbidden, "model_not_priced", "Forbidden",
                    model is null
                        ? "This API key has a spending budget, and the gateway cannot tell which model this call uses, so it cannot price it."
                        : $"This API key has a spending budget, and the gateway has no price for model '{model}' on upstream '{route.Name}'.",
                    new Dictionary<string, object?> { ["model"] = model }).ConfigureAwait(false);
                return null;
            }
        }
        KeyRateLimiter.KeyLease lease;
        try
        {
            if (NeverAdmits(policies, tokens) is { } never)
            {
                await RefuseNeverAdmissibleAsync(context, key, route, policies, never, tokens).ConfigureAwait(false);
                return null;
            }
            lease = (KeyRateLimiter.KeyLease)await _limiter.AcquireAsync(new LimitRequest(key, tokens, pattern, cost), 1, context.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return null;
        }

        var now = _limiter.Clock.UtcNow;
        var policyHeader = RateLimitHeaders.FormatPolicies(policies, now);
        var stateHeader = RateLimitHeaders.FormatState(lease.DecisionSpan, now);
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
        var refusing = lease.Refusal!.Value;
        Log.Refused(_logger, key.Id, policy, route.Name);
        if (refusing.Policy.Unit == PolicyUnit.MicroUsd)
        {
            context.Items[RefusalItem] = "budget_exceeded";
            var period = refusing.Policy.Window.IsCalendarMonth ? "monthly" : "daily";
            var forModel = refusing.Policy.Name.Contains('@', StringComparison.Ordinal) ? " for this model" : "";
            await Problem.WriteAsync(context, StatusCodes.Status429TooManyRequests, "budget_exceeded", "Too Many Requests",
                $"This API key has spent its {period} budget{forModel} ({Usd(refusing.Policy.Limit)} USD, policy '{policy}'): "
                + $"{Usd(refusing.Remaining)} USD is left and this call could cost up to {Usd(cost)} USD. Retry after {seconds} s.",
                new Dictionary<string, object?>
                {
                    ["policy"] = policy,
                    ["budgetUsd"] = refusing.Policy.Limit / 1_000_000m,
                    ["remainingUsd"] = Math.Max(0, refusing.Remaining) / 1_000_000m,
                    ["callMaxCostUsd"] = cost / 1_000_000m,
                    ["retryAfterSeconds"] = long.Parse(seconds, CultureInfo.InvariantCulture),
                },
                headers).ConfigureAwait(false);
            return null;
        }
        var quota = refusing.Policy.IsQuota;
        context.Items[RefusalItem] = quota ? "quota_exceeded" : "rate_limited";
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

    // A token policy whose whole window is smaller than the call's reservation. A loop: a lambda capturing 'tokens' would
    // allocate its closure on every call of AdmitAsync.
    private static LimitPolicy? NeverAdmits(IReadOnlyList<LimitPolicy> policies, long tokens)
    {
        for (var i = 0; i < policies.Count; i++)
        {
            if (policies[i].Unit == PolicyUnit.Tokens && tokens > policies[i].Limit)
            {
                return policies[i];
            }
        }
        return null;
    }

    private const string RefusalItem = "funcproxy.limit_refusal";

    /// <summary>The problem code of the limiter's refusal of this call (<c>rate_limited</c>, <c>quota_exceeded</c>, <c>budget_exceeded</c>...), if it refused.</summary>
    public static string? RefusalCode(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Items.TryGetValue(RefusalItem, out var code) ? code as string : null;
    }

    private static string Usd(long microUsd) => (microUsd / 1_000_000m).ToString("0.00####", CultureInfo.InvariantCulture);

    private static partial class Log
    {
        [LoggerMessage(EventId = 3012, Level = LogLevel.Information, Message = "Key {KeyId} refused with 413: the call reserves {Tokens} tokens, more than policy {Policy} allows per window ({Limit}), on upstream {Upstream}.")]
        public static partial void NeverAdmissible(ILogger logger, string keyId, string policy, long tokens, long limit, string upstream);

        [LoggerMessage(EventId = 3013, Level = LogLevel.Information, Message = "Key {KeyId} has a budget and model {Model} on upstream {Upstream} has no price: refused.")]
        public static partial void Unpriced(ILogger logger, string keyId, string model, string upstream);

        [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "Key {KeyId} refused by policy {Policy} on upstream {Upstream}.")]
        public static partial void Refused(ILogger logger, string keyId, string policy, string upstream);

        [LoggerMessage(EventId = 3011, Level = LogLevel.Warning, Message = "Key {KeyId} refused with 503: rate-limit storage is down and the failure mode is Closed (policy {Policy}).")]
        public static partial void Unavailable(ILogger logger, string keyId, string policy);
    }
}
