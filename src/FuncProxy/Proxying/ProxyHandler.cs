using System.Diagnostics;
using System.Runtime.CompilerServices;
using FuncProxy.Http;
using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using FuncProxy.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Proxying;

/// <summary>
/// The client call path: route, authenticate, authorize, limit, then (<see cref="PoolForwarder"/>) choose a backend, attach its
/// credential, forward with YARP failing over between backends, meter,
/// and turn every failure into problem+json. Both hosts call <see cref="HandleAsync"/> with the request's <see cref="HttpContext"/>.
/// </summary>
public sealed partial class ProxyHandler
{
    private readonly UpstreamCatalog _catalog;
    private readonly KeyAuthenticator _authenticator;
    private readonly PoolForwarder _pool;
    private readonly FuncProxyMetrics _metrics;
    private readonly RequestLimiter _limiter;
    private readonly UsageMeter _meter;
    private readonly ILogger _logger;
    private readonly ClientAddress _clientAddress;
    private readonly FailureLockout _keyLockout;
    private readonly Spend.PriceTable _prices;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly CrossOrigin _crossOrigin;
    // Each unpriced (upstream, model) is logged once per instance; the metric counts every call.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Upstream, string Model), byte> _unpricedLogged = new();

    public ProxyHandler(
        UpstreamCatalog catalog,
        KeyAuthenticator authenticator,
        PoolForwarder pool,
        FuncProxyMetrics metrics,
        RequestLimiter limiter,
        UsageMeter meter,
        ILogger<ProxyHandler> logger,
        ClientAddress clientAddress,
        ClientKeyLockout keyLockout,
        Spend.PriceTable prices,
        IOptionsMonitor<FuncProxyOptions> options,
        CrossOrigin crossOrigin)
    {
        ArgumentNullException.ThrowIfNull(crossOrigin);
        _crossOrigin = crossOrigin;
        ArgumentNullException.ThrowIfNull(prices);
        ArgumentNullException.ThrowIfNull(options);
        _prices = prices;
        _options = options;
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(authenticator);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(limiter);
        ArgumentNullException.ThrowIfNull(meter);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentNullException.ThrowIfNull(clientAddress);
        ArgumentNullException.ThrowIfNull(keyLockout);
        _metrics = metrics;
        _clientAddress = clientAddress;
        _keyLockout = keyLockout.Lockout;
        _catalog = catalog;
        _authenticator = authenticator;
        _pool = pool;
        _limiter = limiter;
        _meter = meter;
        _logger = logger;
    }

    /// <param name="context">The client's request.</param>
    /// <param name="upstream">The <c>{upstream}</c> route value.</param>
    /// <param name="path">The <c>{**path}</c> route value: the rest of the path, as routing decoded it.</param>
    public async Task HandleAsync(HttpContext context, string upstream, string? path)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.Headers[Problem.RequestIdHeader] = Problem.RequestId(context);
        context.Response.Headers.XContentTypeOptions = "nosniff";
        using var activity = FuncProxyMetrics.ActivitySource.StartActivity("funcproxy.proxy");
        activity?.SetTag("funcproxy.upstream", upstream);
        var route = _catalog.Find(upstream);
        var refusal = await HandleCoreAsync(context, route, path, activity).ConfigureAwait(false);
        var status = context.Response.StatusCode;
        activity?.SetTag("http.response.status_code", status);
        var routeName = route?.Name ?? "(unknown)";
        if (refusal == CorsPreflight)
        {
            _metrics.Request(routeName, "preflight", status);
            return;
        }
        if (refusal is not null)
        {
            activity?.SetTag("funcproxy.refusal", refusal);
            activity?.SetStatus(ActivityStatusCode.Error, refusal);
            _metrics.Refusal(routeName, refusal);
        }
        _metrics.Request(routeName, refusal is null ? "forwarded" : "refused", status);
    }

    // A preflight the gateway granted: answered by the gateway, but not a refusal.
    private const string CorsPreflight = "cors_preflight";

    /// <returns>Null when the call was forwarded; otherwise why the gateway answered itself.</returns>
    /// <remarks>
    /// Its state machine (every local of the request path, some 400 bytes) comes from the runtime's small pool when one is
    /// free (safe: the one caller awaits the result once). The pool keeps about one per core and thread, so at 32 calls in
    /// flight on 2 cores it saved only about 80 bytes a call (docs/benchmarks.md, issue 11); fewer calls in flight reuse more.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<string?> HandleCoreAsync(HttpContext context, UpstreamRoute? route, string? path, Activity? activity)
    {
        // 0. What may be forwarded at all (RequestHygiene): the method, and what the Connection header names.
        var request = context.Request;
        if (!RequestHygiene.IsAllowedMethod(request.Method))
        {
            await Problem.WriteAsync(context, StatusCodes.Status405MethodNotAllowed, "method_not_allowed", "Method Not Allowed",
                $"The gateway forwards {RequestHygiene.AllowedMethods}.", headers: [new("Allow", RequestHygiene.AllowedMethods)]).ConfigureAwait(false);
            return "method_not_allowed";
        }
        if (!RequestHygiene.HasRemovableConnectionOptions(request.Headers))
        {
            await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "invalid_header", "Bad Request",
                "The Connection header names a header that describes the message itself (Host, Transfer-Encoding or Content-*).").ConfigureAwait(false);
            return "invalid_header";
        }
        if (context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true })
        {
            // Protocol upgrades (WebSocket, h2c) would become a tunnel that no limit or meter can see into. RFC 9110 7.8
            // lets a server ignore Upgrade: without the feature YARP forwards a plain request, minus the hop-by-hop headers.
            context.Features.Set<IHttpUpgradeFeature>(null);
        }

        // 1. Route.
        if (route is null)
        {
            await Problem.WriteAsync(context, StatusCodes.Status404NotFound, "unknown_upstream", "Not Found",
                "No upstream is configured under that name.").ConfigureAwait(false);
            return "unknown_upstream";
        }

        // CORS (CrossOrigin): a browser's preflight is answered here, before any key is asked for, and never forwarded; every
        // other answer to an allowed origin (refusals included, so a page can read them) carries the grant.
        if (CrossOrigin.IsPreflight(request))
        {
            await _crossOrigin.AnswerPreflightAsync(context, route).ConfigureAwait(false);
            return context.Response.StatusCode == StatusCodes.Status204NoContent ? CorsPreflight : "cors_not_allowed";
        }
        var grant = _crossOrigin.GrantOnStart(context, route);

        // 2. Authenticate. An IP that keeps presenting refused keys is locked out first, so nobody guesses keys at speed.
        // A proxy hop (see ClientAddress) is never locked out: that would lock out every client behind it.
        var client = _clientAddress.ResolveClient(context);
        var clientIp = client.Address;
        if (!client.IsProxyHop && _keyLockout.IsLockedOut(clientIp, out var lockedFor))
        {
            await Problem.TooManyRequestsAsync(context, "too_many_failed_keys",
                "Too many refused API keys from this address; try again later.", lockedFor).ConfigureAwait(false);
            return "too_many_failed_keys";
        }
        KeyAuthentication auth;
        try
        {
            auth = await _authenticator.AuthenticateAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        }
        catch (KeyStoreUnavailableException)
        {
            Log.KeyStoreUnavailable(_logger, route.Name);
            await Problem.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "key_store_unavailable", "Service Unavailable",
                "The gateway cannot check API keys right now. Try again shortly.",
                headers: [new("Retry-After", "5")]).ConfigureAwait(false);
            return "key_store_unavailable";
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return "client_gone";
        }
        if (!auth.Succeeded)
        {
            Log.KeyRefused(_logger, auth.KeyId ?? "(none)", auth.Refusal, route.Name);
            // Counted in storage only here, on a refusal (CancellationToken.None: a client that leaves still counted).
            if (auth.Refusal != KeyRefusal.Missing && !client.IsProxyHop && await _keyLockout.RecordFailureAsync(clientIp, CancellationToken.None).ConfigureAwait(false))
            {
                Log.ClientLockedOut(_logger, clientIp);
            }
            if (auth.ByToken)
            {
                await Problem.InvalidTokenAsync(context).ConfigureAwait(false);
                return "invalid_token";
            }
            await Problem.UnauthorizedAsync(context).ConfigureAwait(false);
            return "invalid_api_key";
        }
        var key = auth.Record!;
        activity?.SetTag("funcproxy.key_id", key.Id);
        activity?.SetTag("funcproxy.credential", auth.ByToken ? "entra_token" : "key");

        // 3. Authorize.
        if (!key.AllowsUpstream(route.Name))
        {
            Log.UpstreamForbidden(_logger, key.Id, route.Name);
            await Problem.WriteAsync(context, StatusCodes.Status403Forbidden, "upstream_not_allowed", "Forbidden",
                "This API key may not call this upstream.").ConfigureAwait(false);
            return "upstream_not_allowed";
        }
        // A key's own origins narrow its upstreams' CORS policies: a page elsewhere cannot spend it (nor read the answer).
        var origin = request.Headers.Origin;
        if (origin.Count > 0 && !CrossOrigin.KeyAllows(key.AllowedOrigins, origin.ToString()))
        {
            grant?.Withdraw();
            Log.OriginForbidden(_logger, key.Id, route.Name);
            await Problem.WriteAsync(context, StatusCodes.Status403Forbidden, "origin_not_allowed", "Forbidden",
                "This API key may not be used from this origin.").ConfigureAwait(false);
            return "origin_not_allowed";
        }

        if (!UpstreamRoute.TryParsePath(path, context.Request.QueryString.Value, out var upstreamPath))
        {
            Log.PathRefused(_logger, key.Id, route.Name);
            await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "invalid_path", "Bad Request",
                "The request path is not allowed: no dot segments, backslashes, encoded slashes or control characters.").ConfigureAwait(false);
            return "invalid_path";
        }
        if (context.Request.ContentLength > route.MaxRequestBodyBytes)
        {
            await BodyTooLargeAsync(context, route).ConfigureAwait(false);
            return "request_too_large";
        }

        // The body limit goes on before anything reads the body (the start of a JSON body is read ahead for its model and limits).
        var body = LimitBody(context, route);
        var options = _options.CurrentValue;
        CallBody call;
        try
        {
            call = body is null ? CallBody.Empty
                : await CallBody.ReadAsync(context.Request, options.Limits.TokenEstimatePeekBytes, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception e) when (PoolForwarder.IsBodyReadFailure(e, context))
        {
            return await PoolForwarder.AnswerBodyReadFailureAsync(context, route, e).ConfigureAwait(false);
        }

        // 4. Models: the key's aliases, then its allow-list, apply to the model the call names (JSON 'model', else an Azure deployment).
        if (call.DuplicateMember is { } duplicate)
        {
            await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "invalid_request", "Bad Request",
                $"The body names '{duplicate}' more than once; the gateway and the upstream could read different values, so the call is refused.").ConfigureAwait(false);
            return "invalid_request";
        }
        if (call.ModelInvalid)
        {
            await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "invalid_model", "Bad Request",
                $"The 'model' field must be a string of 1-{CallBody.MaxModelLength} characters without control characters.").ConfigureAwait(false);
            return "invalid_model";
        }
        var requested = call.Model ?? AzureDeployment(path);
        var model = requested is null ? null : key.ResolveModel(requested);
        if (model is null ? key.AllowedModels.Count > 0 && call.HasBody : !key.AllowsModel(model))
        {
            Log.ModelForbidden(_logger, key.Id, model ?? "(none)", route.Name);
            await Problem.WriteAsync(context, StatusCodes.Status403Forbidden, "model_not_allowed", "Forbidden",
                model is null
                    ? "This API key may call only some models, and the gateway cannot tell which model this call uses."
                    : $"This API key may not call model '{requested}'.",
                new Dictionary<string, object?> { ["model"] = requested }).ConfigureAwait(false);
            return "model_not_allowed";
        }
        var addUsage = options.Spend.IncludeStreamUsage && call.Stream && call.IncludeUsage != true && IsChatCompletions(path) && call.CanAddIncludeUsage;
        var alias = call.Model is not null && !string.Equals(model, call.Model, StringComparison.Ordinal) ? model : null;
        if ((alias is not null || addUsage) && !call.Rewrite(context.Request, alias, addUsage))
        {
            addUsage = false;
        }
        var price = _prices.Find(route.Name, model);
        if (price is null && call.HasBody)
        {
            _metrics.Unpriced(route.Name, model);
            // ContainsKey first: it takes no lock, while Count takes all of the dictionary's (every unpriced call did).
            if (!_unpricedLogged.ContainsKey((route.Name, model ?? "")) && _unpricedLogged.Count < 1000 && _unpricedLogged.TryAdd((route.Name, model ?? ""), 0))
            {
                Log.UnpricedModel(_logger, model ?? "(none)", route.Name);
            }
        }

        // 5. Limit: the key's policies (and its per-model ones) admit the call, reserving its expected tokens and its most
        // expensive cost, or answer 429 themselves.
        var admission = await _limiter.AdmitAsync(context, key, route, call, model, price).ConfigureAwait(false);
        if (admission is null)
        {
            return context.Response.StatusCode switch
            {
                StatusCodes.Status503ServiceUnavailable => "rate_limiter_unavailable",
                StatusCodes.Status403Forbidden => "model_not_priced",
                StatusCodes.Status413PayloadTooLarge => "tokens_exceed_limit",
                _ => RequestLimiter.RefusalCode(context) ?? "rate_limited",
            };
        }

        // 7. Meter (set up now, done when the response has ended): usage is read as the response streams, settles the
        // reservations and is counted in the usage table, once per client call however many backends were tried.
        var genAi = activity is null && !_metrics.GenAiEnabled ? null : GenAiCall.For(model, path, route.Provider, activity);
        using var metering = _meter.Begin(context, key, route.Name, admission, model, price, stripUsageChunk: addUsage, genAi, _metrics);

        // 6. Choose a backend, attach its credential and forward, failing over while nothing has reached the client (the body,
        // edited once above, is replayed as it is to each backend, with that backend's deployment map).
        var outcome = await _pool.ForwardAsync(context, route, upstreamPath, key, metering, body).ConfigureAwait(false);
        await metering.CompleteAsync().ConfigureAwait(false);
        return outcome;
    }

    /// <summary>The deployment of an Azure OpenAI path (<c>openai/deployments/{deployment}/...</c>), which names the model there.</summary>
    internal static string? AzureDeployment(string? path)
    {
        const string Prefix = "openai/deployments/";
        if (path is null || !path.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var rest = path.AsSpan(Prefix.Length);
        var end = rest.IndexOf('/');
        var deployment = (end < 0 ? rest : rest[..end]).ToString();
        return ModelPattern.IsValid(deployment) ? deployment : null;
    }

    private static bool IsChatCompletions(string? path) =>
        path is not null && path.TrimEnd('/').EndsWith("chat/completions", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Holds the request body to the upstream's limit, the same in both hosts, and lifts the server's own default (about
    /// 28.6 MiB on Kestrel), which would otherwise cut in first with an error that is not ours. Null: the request has no body.
    /// </summary>
    private static RequestBodyLimitStream? LimitBody(HttpContext context, UpstreamRoute route)
    {
        var request = context.Request;
        var bodyDetection = context.Features.Get<IHttpRequestBodyDetectionFeature>();
        var hasBody = bodyDetection?.CanHaveBody ?? (request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0);
        if (!hasBody)
        {
            return null;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } serverLimit)
        {
            serverLimit.MaxRequestBodySize = null;
        }
        var limited = new RequestBodyLimitStream(request.Body, route.MaxRequestBodyBytes);
        request.Body = limited;
        return limited;
    }

    private static Task BodyTooLargeAsync(HttpContext context, UpstreamRoute route) => PoolForwarder.BodyTooLargeAsync(context, route);

    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Refused key {KeyId} for upstream {Upstream}: {Refusal}.")]
        public static partial void KeyRefused(ILogger logger, string keyId, KeyRefusal refusal, string upstream);

        [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Key {KeyId} may not call upstream {Upstream}.")]
        public static partial void UpstreamForbidden(ILogger logger, string keyId, string upstream);

        [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Refused a path for key {KeyId} on upstream {Upstream}: it would leave the base URL or is malformed.")]
        public static partial void PathRefused(ILogger logger, string keyId, string upstream);

        [LoggerMessage(EventId = 4101, Level = LogLevel.Warning, Message = "Locked out {ClientIp} after repeated refused client keys.")]
        public static partial void ClientLockedOut(ILogger logger, string clientIp);

        [LoggerMessage(EventId = 2013, Level = LogLevel.Information, Message = "Key {KeyId} may not be used from the request's origin on upstream {Upstream}.")]
        public static partial void OriginForbidden(ILogger logger, string keyId, string upstream);

        [LoggerMessage(EventId = 2011, Level = LogLevel.Information, Message = "Key {KeyId} may not call model {Model} on upstream {Upstream}.")]
        public static partial void ModelForbidden(ILogger logger, string keyId, string model, string upstream);

        [LoggerMessage(EventId = 2012, Level = LogLevel.Warning, Message = "Model {Model} on upstream {Upstream} has no price: its calls are metered at no cost (set FuncProxy:Upstreams:{Upstream}:Prices).")]
        public static partial void UnpricedModel(ILogger logger, string model, string upstream);

        [LoggerMessage(EventId = 2010, Level = LogLevel.Error, Message = "Key store unavailable while authenticating a call to upstream {Upstream}.")]
        public static partial void KeyStoreUnavailable(ILogger logger, string upstream);
    }
}
