using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using FuncProxy.Backends;
using FuncProxy.Http;
using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using FuncProxy.Secrets;
using FuncProxy.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Proxying;

/// <summary>
/// Steps 5 and 6 of the request path for an upstream's pool: choose the best available backend, attach its credential,
/// map the model to its deployment, forward with YARP, and fail over to the next backend on a connection failure, a timeout
/// before the response headers, or a status of <see cref="FailoverOptions.RetryOnStatus"/>, as long as nothing has reached
/// the client, up to <see cref="FailoverOptions.MaxAttempts"/> backends. The request body is replayed from memory when it
/// is at most <see cref="FailoverOptions.MaxReplayBodyBytes"/>; a larger one is streamed to a single backend. Each attempt
/// feeds the backend's circuit breaker, and an opening is shared with other instances through <see cref="BreakerBoard"/>.
/// </summary>
public sealed partial class PoolForwarder
{
    private readonly SecretCache _secrets;
    private readonly BackendTokens _tokens;
    private readonly IHttpForwarder _forwarder;
    private readonly UpstreamInvoker _invoker;
    private readonly FuncProxyMetrics _metrics;
    private readonly BreakerBoard _board;
    private readonly ILogger _logger;

    public PoolForwarder(SecretCache secrets, BackendTokens tokens, IHttpForwarder forwarder, UpstreamInvoker invoker, FuncProxyMetrics metrics,
        BreakerBoard board, ILogger<PoolForwarder> logger)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(forwarder);
        ArgumentNullException.ThrowIfNull(invoker);
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(board);
        ArgumentNullException.ThrowIfNull(logger);
        _secrets = secrets;
        _tokens = tokens;
        _forwarder = forwarder;
        _invoker = invoker;
        _metrics = metrics;
        _board = board;
        _logger = logger;
    }

    /// <returns>Null when the call was forwarded (whatever the backend answered); otherwise why the gateway answered itself.</returns>
    /// <remarks>Its state machine comes from the runtime's pool when one is free, as <see cref="ProxyHandler"/>'s does: the one caller awaits it once.</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<string?> ForwardAsync(HttpContext context, UpstreamRoute route, UpstreamPath path, KeyRecord key, Metering metering, RequestBodyLimitStream? limit)
    {
        var request = context.Request;
        var pool = route.Pool;
        var failover = route.Failover;

        // The body, in memory when the call may need it again (another backend, a refreshed credential, a mapped model).
        byte[]? replay = null;
        var replayable = limit is null;
        if (limit is not null && route.KeepsBodyForReplay)
        {
            try
            {
                (replay, replayable) = await CaptureAsync(request, failover.MaxReplayBodyBytes, context.RequestAborted).ConfigureAwait(false);
            }
            catch (Exception e) when (IsBodyReadFailure(e, context))
            {
                return await AnswerBodyReadFailureAsync(context, route, e).ConfigureAwait(false);
            }
            if (!replayable)
            {
                Log.BodyTooLargeToReplay(_logger, key.Id, route.Name, failover.MaxReplayBodyBytes);
            }
        }
        // The replayed body (already edited once by the read-ahead: alias, include_usage) is parsed whole for its model when a
        // backend maps models to deployments; CallBody is the one JSON model reader and rewriter.
        var json = replay is not null && route.MapsModels && CallBody.IsJson(request.ContentType)
            ? CallBody.Parse(replay, replay.Length, complete: true)
            : null;
        var model = json?.Model;

        // What the gateway already put on the response (request id, RateLimit headers) survives a failed attempt's reset.
        // (In a pooled array: every call keeps them, few ever need them back.)
        var keptCount = context.Response.Headers.Count;
        var kept = ArrayPool<KeyValuePair<string, StringValues>>.Shared.Rent(keptCount);
        context.Response.Headers.CopyTo(kept, 0);
        // The backends tried so far: none, then the first one's own one-element array (most calls end there), then a list.
        IReadOnlyCollection<Backend> tried = [];
        Backend? pinned = null;
        var credentialRetried = false;
        // How the last failed attempt would be answered if no other backend takes the call. A value, not a lambda: lambdas
        // capturing the context would allocate their closures on every call, failing or not.
        var lastFailure = default(Failure);

        try
        {
            for (var attempt = 1; ; attempt++)
            {
                var isProbe = false;
                var backend = pinned ?? pool.Choose(tried, out isProbe);
                pinned = null;
                if (backend is null)
                {
                    return lastFailure.Kind != FailureKind.None
                        ? await AnswerAsync(context, route, key, lastFailure).ConfigureAwait(false)
                        : await NoBackendAsync(context, route).ConfigureAwait(false);
                }
                if (!tried.Contains(backend))
                {
                    tried = tried.Count == 0 ? backend.Alone : new List<Backend>(tried) { backend };
                }

                var credential = await GetCredentialAsync(context, backend).ConfigureAwait(false);
                if (credential.Refusal is { } refusal)
                {
                    backend.Breaker.Released(isProbe);
                    if (refusal == "client_gone")
                    {
                        return refusal;
                    }
                    lastFailure = new(FailureKind.Credential, backend, refusal);
                    if (replayable && tried.Count < failover.MaxAttempts && pool.HasAnother(tried))
                    {
                        _metrics.Failover(route.Name, backend.Name, refusal);
                        continue;
                    }
                    return await AnswerAsync(context, route, key, lastFailure).ConfigureAwait(false);
                }

                if (!backend.TryBuildTarget(path, out var target))
                {
                    backend.Breaker.Released(isProbe);
                    await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "invalid_path", "Bad Request",
                        "The request path is not allowed: no dot segments, backslashes, encoded slashes or control characters.").ConfigureAwait(false);
                    return "invalid_path";
                }
                if (replay is not null)
                {
                    var body = model is not null && !backend.NamesDeploymentInPath(path) && backend.MapModel(model) is { } mapped
                        ? json!.WithModel(mapped) ?? replay
                        : replay;
                    request.Body = new MemoryStream(body, writable: false);
                    request.ContentLength = body.Length;
                    request.Headers.TransferEncoding = StringValues.Empty;
                }

                var mayFailOver = replayable && tried.Count < failover.MaxAttempts && pool.HasAnother(tried);
                var call = new UpstreamCall(backend, target, credential.Value, mayFailOver ? route.RetryOnStatus : null, pool.Now);
                metering.Forwarding(backend.Name);
                ForwarderError error;
                var started = Stopwatch.GetTimestamp();
                using (var span = FuncProxyMetrics.ActivitySource.StartActivity("funcproxy.attempt"))
                {
                    span?.SetTag("funcproxy.upstream", route.Name);
                    span?.SetTag("funcproxy.backend", backend.Name);
                    span?.SetTag("funcproxy.attempt", attempt);
                    span?.SetTag("server.address", target.Host);
                    if (route.Provider is { } provider)
                    {
                        span?.SetTag("gen_ai.provider.name", provider);
                    }
                    error = await _forwarder.SendAsync(context, backend.Origin, _invoker.Invoker, backend.RequestConfig, call).ConfigureAwait(false);
                    span?.SetTag("http.response.status_code", call.UpstreamStatus);
                    var outcome = call.CredentialRejected ? "credential_rejected" : call.HeldBack ? "failed_over" : error == ForwarderError.None ? "answered" : error.ToString();
                    span?.SetTag("funcproxy.outcome", outcome);
                    if (call.HeldBack || error != ForwarderError.None)
                    {
                        span?.SetStatus(ActivityStatusCode.Error, outcome);
                    }
                    _metrics.BackendRequest(route.Name, backend.Name, outcome, call.UpstreamStatus);
                }
                _metrics.UpstreamDuration(route.Name, call.UpstreamStatus, Stopwatch.GetElapsedTime(started));

                if (call.CredentialRejected)
                {
                    backend.Breaker.Released(isProbe);
                    var fresh = await RenewCredentialAsync(context, backend, credential).ConfigureAwait(false);
                    if (!credentialRetried && replayable && fresh is not null && fresh != credential.Value)
                    {
                        Log.RetryingWithFreshCredential(_logger, route.Name, backend.Name);
                        credentialRetried = true;
                        pinned = backend;
                        Reset(context, kept.AsSpan(0, keptCount));
                        attempt--;
                        continue;
                    }
                    Log.CredentialRejected(_logger, route.Name, backend.Name);
                    lastFailure = new(FailureKind.CredentialRejected);
                    if (mayFailOver && pool.HasAnother(tried))
                    {
                        _metrics.Failover(route.Name, backend.Name, "credential_rejected");
                        Reset(context, kept.AsSpan(0, keptCount));
                        continue;
                    }
                    return await AnswerAsync(context, route, key, lastFailure).ConfigureAwait(false);
                }

                if (call.HeldBack)
                {
                    Judge(route, backend, isProbe, failed: true, call.RetryAfter);
                    Log.FailingOver(_logger, key.Id, route.Name, backend.Name, call.UpstreamStatus ?? 0);
                    _metrics.Failover(route.Name, backend.Name, call.UpstreamStatus!.Value.ToString(CultureInfo.InvariantCulture));
                    lastFailure = new(FailureKind.HeldBack, Status: call.UpstreamStatus.Value, RetryAfter: call.RetryAfter);
                    Reset(context, kept.AsSpan(0, keptCount));
                    continue;
                }

                if (error == ForwarderError.None)
                {
                    var failed = call.UpstreamStatus is { } answered && route.RetryOnStatus.Contains(answered);
                    Judge(route, backend, isProbe, failed, call.RetryAfter);
                    return null;
                }

                var bodyTooLarge = limit?.LimitExceeded == true;
                var beforeResponse = !context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested && !bodyTooLarge
                    && error is ForwarderError.Request or ForwarderError.RequestTimedOut or ForwarderError.ResponseHeaders;
                if (!beforeResponse)
                {
                    // The client went away, sent a bad body, or the answer broke after it began: nothing to fail over.
                    if (error is ForwarderError.ResponseBodyDestination && !context.RequestAborted.IsCancellationRequested)
                    {
                        Judge(route, backend, isProbe, failed: true, retryAfter: null);
                    }
                    else
                    {
                        backend.Breaker.Released(isProbe);
                    }
                    await ReportForwardErrorAsync(context, route, key, error, bodyTooLarge).ConfigureAwait(false);
                    return null;
                }
                Judge(route, backend, isProbe, failed: true, retryAfter: null);
                lastFailure = new(FailureKind.ForwardError, Error: error);
                if (!mayFailOver)
                {
                    return await AnswerAsync(context, route, key, lastFailure).ConfigureAwait(false);
                }
                Log.FailingOverAfterError(_logger, key.Id, route.Name, backend.Name, error);
                _metrics.Failover(route.Name, backend.Name, error.ToString());
                Reset(context, kept.AsSpan(0, keptCount));
            }
        }
        finally
        {
            ArrayPool<KeyValuePair<string, StringValues>>.Shared.Return(kept, clearArray: true);
        }
    }

    /// <summary>Reads the body into memory up to <paramref name="max"/> bytes. Past it: the bytes read go first, the rest streams, and the call is not replayable.</summary>
    private static async ValueTask<(byte[] Bytes, bool Replayable)> CaptureAsync(HttpRequest request, long max, CancellationToken cancellationToken)
    {
        if (request.ContentLength > max)
        {
            return ([], false);
        }
        if (request.Body is PeekedRequestBody peeked && peeked.TryTakeWhole(request.ContentLength, out var whole))
        {
            // The read-ahead (CallBody) already holds the whole body, as edited: kept as it is, not read again.
            return (whole, true);
        }
        if (request.ContentLength is { } length)
        {
            // The common case: the size is known, so the body is read straight into an array of that size (no chunk, no copy).
            var exact = new byte[length];
            var read = await request.Body.ReadAtLeastAsync(exact, exact.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            return (read == exact.Length ? exact : exact[..read], true);
        }
        using var buffer = new MemoryStream(4096);
        var chunk = ArrayPool<byte>.Shared.Rent((int)Math.Min(16 * 1024, max + 1));
        try
        {
            int n;
            while ((n = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
            {
                buffer.Write(chunk, 0, n);
                if (buffer.Length > max)
                {
                    request.Body = new PeekedRequestBody(buffer.ToArray(), request.Body);
                    return ([], false);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        return (buffer.ToArray(), true);
    }

    /// <summary>A failed attempt's status and headers go; what the gateway had set before the first attempt comes back.</summary>
    private static void Reset(HttpContext context, ReadOnlySpan<KeyValuePair<string, StringValues>> kept)
    {
        context.Response.Clear();
        foreach (var (name, value) in kept)
        {
            context.Response.Headers[name] = value;
        }
    }

    private void Judge(UpstreamRoute route, Backend backend, bool isProbe, bool failed, TimeSpan? retryAfter)
    {
        if (!failed)
        {
            backend.Breaker.Succeeded();
            return;
        }
        if (backend.Breaker.Failed(route.Pool.Now, retryAfter, isProbe) is { } opened)
        {
            Log.BreakerOpened(_logger, route.Name, backend.Name, opened.Until, opened.Reason);
            _metrics.BreakerOpened(route.Name, backend.Name, opened.Reason);
            _board.Opened(backend, opened.Until, opened.Reason);
        }
    }

    private readonly record struct Credential(string? Value, long SecretGeneration, string? Refusal);

    private async ValueTask<Credential> GetCredentialAsync(HttpContext context, Backend backend)
    {
        try
        {
            switch (backend.Auth)
            {
                case BackendAuth.Secret:
                    var secret = await _secrets.GetAsync(backend.SecretName!, context.RequestAborted).ConfigureAwait(false);
                    if (secret.Value is null)
                    {
                        Log.SecretMissing(_logger, backend.Upstream, backend.Name, backend.SecretName!);
                        return new(null, 0, "credential_not_configured");
                    }
                    return new(secret.Value, secret.Generation, null);
                case BackendAuth.ManagedIdentity:
                    var token = await _tokens.GetAsync(backend.ManagedIdentityClientId, backend.TokenScope, context.RequestAborted).ConfigureAwait(false);
                    return new(token, 0, null);
                default:
                    return new(null, 0, null);
            }
        }
        catch (SecretUnavailableException)
        {
            Log.SecretUnavailable(_logger, backend.Upstream, backend.Name, backend.SecretName!);
            return new(null, 0, "credential_unavailable");
        }
        catch (BackendTokenUnavailableException)
        {
            Log.TokenUnavailable(_logger, backend.Upstream, backend.Name, backend.TokenScope);
            return new(null, 0, "credential_unavailable");
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return new(null, 0, "client_gone");
        }
    }

    /// <summary>After a 401: drops the rejected credential and reads a fresh one; null when none could be had.</summary>
    private async Task<string?> RenewCredentialAsync(HttpContext context, Backend backend, Credential rejected)
    {
        switch (backend.Auth)
        {
            case BackendAuth.Secret:
                _secrets.Invalidate(backend.SecretName!, rejected.SecretGeneration);
                break;
            case BackendAuth.ManagedIdentity:
                _tokens.Invalidate(backend.ManagedIdentityClientId, backend.TokenScope, rejected.Value!);
                break;
            default:
                return null;
        }
        var fresh = await GetCredentialAsync(context, backend).ConfigureAwait(false);
        return fresh.Value;
    }

    private enum FailureKind
    {
        None,
        Credential,
        CredentialRejected,
        HeldBack,
        ForwardError,
    }

    private readonly record struct Failure(FailureKind Kind, Backend? Backend = null, string? Refusal = null, int Status = 0,
        TimeSpan? RetryAfter = null, ForwarderError Error = ForwarderError.None);

    private async Task<string?> AnswerAsync(HttpContext context, UpstreamRoute route, KeyRecord key, Failure failure)
    {
        switch (failure.Kind)
        {
            case FailureKind.Credential:
                return await CredentialProblemAsync(context, failure.Backend!, failure.Refusal!).ConfigureAwait(false);
            case FailureKind.CredentialRejected:
                return await CredentialRejectedAsync(context).ConfigureAwait(false);
            case FailureKind.HeldBack:
                return await HeldBackAnswerAsync(context, failure.Status, failure.RetryAfter).ConfigureAwait(false);
            default:
                await ReportForwardErrorAsync(context, route, key, failure.Error, bodyTooLarge: false).ConfigureAwait(false);
                return null;
        }
    }

    private static async Task<string?> CredentialProblemAsync(HttpContext context, Backend backend, string refusal)
    {
        if (refusal == "credential_not_configured")
        {
            await Problem.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, refusal, "Service Unavailable",
                "This upstream's credential is not configured on the gateway.").ConfigureAwait(false);
        }
        else
        {
            await Problem.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, refusal, "Service Unavailable",
                "The gateway cannot read this upstream's credential right now. Try again shortly.",
                headers: [new("Retry-After", "5")]).ConfigureAwait(false);
        }
        return refusal;
    }

    private static async Task<string?> CredentialRejectedAsync(HttpContext context)
    {
        await Problem.WriteAsync(context, StatusCodes.Status502BadGateway, "upstream_credential_rejected", "Bad Gateway",
            "The upstream rejected the gateway's credential for it. The operator has to update it.").ConfigureAwait(false);
        return "upstream_credential_rejected";
    }

    /// <summary>
    /// The last backend's answer was held back for a failover that then found no backend left (another call opened its
    /// breaker meanwhile): the client gets the gist of it from the gateway.
    /// </summary>
    private static async Task<string?> HeldBackAnswerAsync(HttpContext context, int status, TimeSpan? retryAfter)
    {
        if (status == StatusCodes.Status429TooManyRequests)
        {
            await Problem.WriteAsync(context, status, "upstream_throttled", "Too Many Requests",
                "Every backend of this upstream is throttling calls right now.", headers: RetryHeaders(retryAfter ?? TimeSpan.FromSeconds(1))).ConfigureAwait(false);
            return "upstream_throttled";
        }
        await Problem.WriteAsync(context, StatusCodes.Status502BadGateway, "upstream_error", "Bad Gateway",
            "Every backend of this upstream failed this call.").ConfigureAwait(false);
        return "upstream_error";
    }

    private async Task<string?> NoBackendAsync(HttpContext context, UpstreamRoute route)
    {
        var wait = route.Pool.SoonestReopening() - route.Pool.Now;
        Log.NoBackend(_logger, route.Name);
        await Problem.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "backends_unavailable", "Service Unavailable",
            "Every backend of this upstream is resting after failures or throttling. Retry after the time given.",
            headers: RetryHeaders(wait)).ConfigureAwait(false);
        return "backends_unavailable";
    }

    private static KeyValuePair<string, string>[] RetryHeaders(TimeSpan wait)
    {
        var ms = Math.Max(1, (long)Math.Ceiling(wait.TotalMilliseconds));
        return
        [
            new("Retry-After", Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture)),
            new("retry-after-ms", ms.ToString(CultureInfo.InvariantCulture)),
        ];
    }

    private async Task ReportForwardErrorAsync(HttpContext context, UpstreamRoute route, KeyRecord key, ForwarderError error, bool bodyTooLarge)
    {
        if (bodyTooLarge)
        {
            await BodyTooLargeAsync(context, route).ConfigureAwait(false);
            return;
        }
        if (context.RequestAborted.IsCancellationRequested || error is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled
            or ForwarderError.ResponseBodyCanceled or ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeResponseCanceled)
        {
            Log.ClientGone(_logger, key.Id, route.Name);
            return;
        }
        Log.ForwardFailed(_logger, key.Id, route.Name, error);
        if (context.Response.HasStarted)
        {
            // Mid-stream: the status line is gone, so the only honest signal left is to abort the response.
            context.Abort();
            return;
        }
        var (status, code, title, detail) = error switch
        {
            ForwarderError.RequestTimedOut => (StatusCodes.Status504GatewayTimeout, "upstream_timeout", "Gateway Timeout",
                "The upstream did not answer within the configured timeout."),
            ForwarderError.RequestBodyClient => (StatusCodes.Status400BadRequest, "request_body_error", "Bad Request",
                "The request body could not be read."),
            ForwarderError.ResponseBodyDestination or ForwarderError.ResponseHeaders => (StatusCodes.Status502BadGateway, "upstream_error", "Bad Gateway",
                "The upstream's answer could not be read."),
            _ => (StatusCodes.Status502BadGateway, "upstream_unreachable", "Bad Gateway",
                "The upstream could not be reached."),
        };
        await Problem.WriteAsync(context, status, code, title, detail).ConfigureAwait(false);
    }

    /// <summary>A failure while reading the client's body: the client's doing (too large, gone, unreadable), never a 5xx.</summary>
    internal static bool IsBodyReadFailure(Exception e, HttpContext context) =>
        e is RequestBodyTooLargeException or IOException or BadHttpRequestException
        || (e is OperationCanceledException && context.RequestAborted.IsCancellationRequested);

    /// <summary>Answers a <see cref="IsBodyReadFailure"/> failure (413, or 400 <c>request_body_error</c>; nothing for a client gone) and names it.</summary>
    internal static async Task<string> AnswerBodyReadFailureAsync(HttpContext context, UpstreamRoute route, Exception e)
    {
        switch (e)
        {
            case RequestBodyTooLargeException:
                await BodyTooLargeAsync(context, route).ConfigureAwait(false);
                return "request_too_large";
            case OperationCanceledException:
                return "client_gone";
            default:
                await Problem.WriteAsync(context, StatusCodes.Status400BadRequest, "request_body_error", "Bad Request",
                    "The request body could not be read.").ConfigureAwait(false);
                return "request_body_error";
        }
    }

    internal static Task BodyTooLargeAsync(HttpContext context, UpstreamRoute route) =>
        Problem.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "request_too_large", "Payload Too Large",
            $"The request body is larger than this upstream accepts ({route.MaxRequestBodyBytes} bytes).",
            new Dictionary<string, object?> { ["limitBytes"] = route.MaxRequestBodyBytes });

    private static partial class Log
    {
        [LoggerMessage(EventId = 2004, Level = LogLevel.Error, Message = "Secret {SecretName} for backend {Upstream}/{Backend} could not be read.")]
        public static partial void SecretUnavailable(ILogger logger, string upstream, string backend, string secretName);

        [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "Secret {SecretName} for backend {Upstream}/{Backend} does not exist.")]
        public static partial void SecretMissing(ILogger logger, string upstream, string backend, string secretName);

        [LoggerMessage(EventId = 2006, Level = LogLevel.Warning, Message = "Backend {Upstream}/{Backend} rejected the cached credential; retrying once with a fresh one.")]
        public static partial void RetryingWithFreshCredential(ILogger logger, string upstream, string backend);

        [LoggerMessage(EventId = 2007, Level = LogLevel.Error, Message = "Backend {Upstream}/{Backend} rejected the gateway's credential.")]
        public static partial void CredentialRejected(ILogger logger, string upstream, string backend);

        [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Forwarding for key {KeyId} to upstream {Upstream} failed: {Error}.")]
        public static partial void ForwardFailed(ILogger logger, string keyId, string upstream, ForwarderError error);

        [LoggerMessage(EventId = 2009, Level = LogLevel.Information, Message = "Client of key {KeyId} went away; the call to upstream {Upstream} was cancelled.")]
        public static partial void ClientGone(ILogger logger, string keyId, string upstream);

        [LoggerMessage(EventId = 2121, Level = LogLevel.Information, Message = "Call of key {KeyId} to {Upstream}: backend {Backend} answered {Status}; failing over.")]
        public static partial void FailingOver(ILogger logger, string keyId, string upstream, string backend, int status);

        [LoggerMessage(EventId = 2122, Level = LogLevel.Warning, Message = "Call of key {KeyId} to {Upstream}: backend {Backend} failed ({Error}); failing over.")]
        public static partial void FailingOverAfterError(ILogger logger, string keyId, string upstream, string backend, ForwarderError error);

        [LoggerMessage(EventId = 2123, Level = LogLevel.Warning, Message = "Circuit breaker of backend {Upstream}/{Backend} opened until {OpenUntil} ({Reason}).")]
        public static partial void BreakerOpened(ILogger logger, string upstream, string backend, DateTimeOffset openUntil, BreakerReason reason);

        [LoggerMessage(EventId = 2124, Level = LogLevel.Warning, Message = "No backend of upstream {Upstream} is available: every breaker is open.")]
        public static partial void NoBackend(ILogger logger, string upstream);

        [LoggerMessage(EventId = 2125, Level = LogLevel.Information, Message = "Call of key {KeyId} to {Upstream} has a body over {MaxReplayBodyBytes} bytes: it goes to one backend, without failover.")]
        public static partial void BodyTooLargeToReplay(ILogger logger, string keyId, string upstream, long maxReplayBodyBytes);

        [LoggerMessage(EventId = 2126, Level = LogLevel.Error, Message = "No access token for backend {Upstream}/{Backend} (scope {Scope}).")]
        public static partial void TokenUnavailable(ILogger logger, string upstream, string backend, string scope);
    }
}
