using System.Buffers.Text;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Threading.RateLimiting;
using Azure;
using FuncProxy.Http;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Admin;

/// <summary>
/// The management API under <c>/api/admin/</c>. Both hosts call <see cref="HandleAsync"/> with the request and the rest
/// of the path. Every call is rate limited per client IP; an IP with too many failed authentications is locked out;
/// every change, authentication failure and lockout is written to the audit log. Routes (see openapi.json):
/// <code>
/// GET  openapi.json                    (no credential needed)
/// GET  console/{file}                  (the operator console's static files, no credential: OperatorConsole.ConsoleAssets)
/// GET  keys?owner=&amp;status=&amp;upstream=&amp;limit=&amp;continuationToken=
/// POST keys                            (Idempotency-Key honoured)
/// GET  keys/{id}         PATCH keys/{id}
/// POST keys/{id}/disable | enable | revoke | rotate
/// GET  keys/{id}/usage?from=&amp;to=
/// GET  audit?keyId=&amp;from=&amp;to=&amp;limit=&amp;continuationToken=
/// GET  client-address                  (the caller's address as the gateway resolves it)
/// GET  token-rules   POST token-rules   GET token-rules/{id}   DELETE token-rules/{id}   (AdminHandler.TokenRules.cs)
/// </code>
/// </summary>
public sealed partial class AdminHandler : IDisposable
{
    private const int MaxBodyBytes = 64 * 1024;
    private const int MaxJsonDepth = 8;
    private const int DefaultPageSize = 100;
    private const int MaxPageSize = 1000;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private static readonly Lazy<byte[]> OpenApiDocument = new(LoadOpenApi);

    private readonly KeyLifecycle _keys;
    private readonly KeyStore _store;
    private readonly KeyRequests _requests;
    private readonly AdminAuthenticator _authenticator;
    private readonly AuditLog _audit;
    private readonly IUsageReader _usage;
    private readonly IdempotencyStore _idempotency;
    private readonly ClientAddress _clientAddress;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly PartitionedRateLimiter<string> _rateLimiter;
    private readonly FailureLockout _lockout;
    private readonly EntraId.TokenRuleLifecycle _tokenRules;
    private readonly IpCounters _counters;
    private readonly LockoutBoard _board;

    public AdminHandler(
        KeyLifecycle keys,
        KeyStore store,
        KeyRequests requests,
        AdminAuthenticator authenticator,
        AuditLog audit,
        IUsageReader usage,
        IdempotencyStore idempotency,
        ClientAddress clientAddress,
        IOptionsMonitor<FuncProxyOptions> options,
        TimeProvider time,
        ILogger<AdminHandler> logger,
        EntraId.TokenRuleLifecycle tokenRules,
        IpCounters counters,
        LockoutBoard board)
    {
        ArgumentNullException.ThrowIfNull(tokenRules);
        _tokenRules = tokenRules;
        ArgumentNullException.ThrowIfNull(counters);
        ArgumentNullException.ThrowIfNull(board);
        _counters = counters;
        _board = board;
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(authenticator);
        ArgumentNullException.ThrowIfNull(audit);
        ArgumentNullException.ThrowIfNull(usage);
        ArgumentNullException.ThrowIfNull(idempotency);
        ArgumentNullException.ThrowIfNull(clientAddress);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _keys = keys;
        _store = store;
        _requests = requests;
        _authenticator = authenticator;
        _audit = audit;
        _usage = usage;
        _idempotency = idempotency;
        _clientAddress = clientAddress;
        _options = options;
        _time = time;
        _logger = logger;
        // Unshared (FuncProxy:Lockouts:Shared false) only. Read once: the per-IP request budget takes effect at start (idle
        // partitions are dropped by the limiter itself).
        var perMinute = options.CurrentValue.Admin.RequestsPerMinutePerIp;
        _rateLimiter = PartitionedRateLimiter.Create<string, string>(ip => RateLimitPartition.GetFixedWindowLimiter(ip, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = perMinute,
            Window = TimeSpan.FromMinutes(1),
            QueueLimit = 0,
        }));
        _lockout = new FailureLockout(LockoutBoard.AdminScope, () =>
        {
            var a = _options.CurrentValue.Admin;
            return (a.MaxFailedAttempts, a.FailureWindow, a.LockoutDuration);
        }, time, counters, board);
    }

    /// <param name="context">The request.</param>
    /// <param name="path">The rest of the path after <c>/api/admin/</c>, as routing decoded it.</param>
    public async Task HandleAsync(HttpContext context, string? path)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.Headers[Problem.RequestIdHeader] = Problem.RequestId(context);
        context.Response.Headers.CacheControl = "no-store";
        context.Response.Headers.XContentTypeOptions = "nosniff";
        var segments = (path ?? "").Split('/', StringSplitOptions.RemoveEmptyEntries);
        // The console's static files come from memory and carry nothing secret: no credential, rate limit or lockout,
        // so the page still loads (and shows the API's refusal) for an address that is locked out.
        if (OperatorConsole.ConsoleAssets.Handles(segments))
        {
            await OperatorConsole.ConsoleAssets.Instance.ServeAsync(context, segments).ConfigureAwait(false);
            return;
        }
        var client = _clientAddress.ResolveClient(context);
        var ip = client.Address;
        try
        {
            var (admitted, retry) = await AdmitAsync(ip).ConfigureAwait(false);
            if (!admitted)
            {
                Log.RateLimited(_logger, ip);
                await Problem.TooManyRequestsAsync(context, "admin_rate_limited", "Too many admin calls from this address; slow down.", retry).ConfigureAwait(false);
                return;
            }
            // A proxy hop (see ClientAddress) is never locked out: that would lock out every client behind it.
            if (!client.IsProxyHop && _lockout.IsLockedOut(ip, out var lockedFor))
            {
                await Problem.TooManyRequestsAsync(context, "admin_locked_out", "Too many failed admin authentications from this address; try again later.", lockedFor).ConfigureAwait(false);
                return;
            }

            if (segments is ["openapi.json"])
            {
                await ServeOpenApiAsync(context).ConfigureAwait(false);
                return;
            }

            var auth = await _authenticator.AuthenticateAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            if (!auth.Succeeded)
            {
                await RefuseAsync(context, client, auth).ConfigureAwait(false);
                return;
            }
            var audit = new AuditContext(auth.Actor!, ip, Problem.RequestId(context));
            await RouteAsync(context, segments, audit).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is RequestFailedException or KeyStoreUnavailableException or HttpRequestException || e is InvalidOperationException && e.InnerException is RequestFailedException)
        {
            Log.StorageFailed(_logger, e);
            await Problem.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "storage_unavailable", "Service Unavailable",
                "The key store cannot be reached right now. Try again shortly.", headers: [new("Retry-After", "5")]).ConfigureAwait(false);
        }
    }

    /// <summary>The per-IP admin budget: one for all instances (the limiter's leased counters), or this instance's own when unshared.</summary>
    private async ValueTask<(bool Admitted, TimeSpan RetryAfter)> AdmitAsync(string ip)
    {
        if (_board.IsShared)
        {
            var perMinute = _options.CurrentValue.Admin.RequestsPerMinutePerIp;
            var (admitted, retryAfter) = await _counters.TakeCallAsync(LockoutBoard.AdminScope, ip, perMinute, CancellationToken.None).ConfigureAwait(false);
            return (admitted, retryAfter > TimeSpan.Zero ? retryAfter : TimeSpan.FromSeconds(1));
        }
        using var lease = _rateLimiter.AttemptAcquire(ip);
        return (lease.IsAcquired, lease.IsAcquired ? TimeSpan.Zero
            : lease.TryGetMetadata(MetadataName.RetryAfter, out var r) ? r : TimeSpan.FromMinutes(1));
    }

    private async Task RefuseAsync(HttpContext context, ResolvedClient client, AdminAuthentication auth)
    {
        var ip = client.Address;
        var actor = auth.Actor ?? "anonymous";
        var audit = new AuditContext(actor, ip, Problem.RequestId(context));
        var forbidden = auth.Refusal == AdminRefusal.Forbidden;
        Log.AuthenticationFailed(_logger, ip, actor, auth.Detail ?? "");
        await AuditAsync(audit, "admin.auth_failed", null, forbidden ? "denied" : "unauthenticated", auth.Detail).ConfigureAwait(false);
        if (!client.IsProxyHop && await _lockout.RecordFailureAsync(ip, CancellationToken.None).ConfigureAwait(false))
        {
            var lockout = _options.CurrentValue.Admin.LockoutDuration;
            Log.LockedOut(_logger, ip, lockout);
            await AuditAsync(audit, "admin.lockout", null, "locked_out", "for " + lockout.ToString("c", CultureInfo.InvariantCulture)).ConfigureAwait(false);
        }
        if (forbidden)
        {
            await Problem.WriteAsync(context, StatusCodes.Status403Forbidden, "admin_forbidden", "Forbidden",
                "The token is valid but does not carry the admin app role.").ConfigureAwait(false);
            return;
        }
        await Problem.WriteAsync(context, StatusCodes.Status401Unauthorized, "admin_unauthorized", "Unauthorized",
            $"Admin calls need an admin key in '{AdminAuthenticator.AdminKeyHeader}'" + (_options.CurrentValue.Admin.EntraId.Authority is null ? "." : " or an Entra ID token as 'Authorization: Bearer'."),
            headers: [new("WWW-Authenticate", "Bearer")]).ConfigureAwait(false);
    }

    private Task RouteAsync(HttpContext context, string[] segments, AuditContext audit)
    {
        var method = context.Request.Method;
        switch (segments)
        {
            case ["keys"]:
                return method switch
                {
                    "GET" => ListAsync(context),
                    "POST" => CreateAsync(context, audit),
                    _ => MethodNotAllowedAsync(context, "GET, POST"),
                };
            case ["keys", var id]:
                return method switch
                {
                    "GET" => WithIdAsync(context, id, () => GetAsync(context, id)),
                    "PATCH" => WithIdAsync(context, id, () => UpdateAsync(context, id, audit)),
                    _ => MethodNotAllowedAsync(context, "GET, PATCH"),
                };
            case ["keys", var id, var verb] when verb is "disable" or "enable" or "revoke" or "rotate":
                return method == "POST"
                    ? WithIdAsync(context, id, () => verb == "rotate" ? RotateAsync(context, id, audit) : SetStatusAsync(context, id, verb, audit))
                    : MethodNotAllowedAsync(context, "POST");
            case ["keys", var id, "usage"]:
                return method == "GET" ? WithIdAsync(context, id, () => UsageAsync(context, id)) : MethodNotAllowedAsync(context, "GET");
            case ["audit"]:
                return method == "GET" ? AuditQueryAsync(context) : MethodNotAllowedAsync(context, "GET");
            case ["token-rules"]:
                return RouteTokenRulesAsync(context, null, audit);
            case ["token-rules", var ruleId]:
                return RouteTokenRulesAsync(context, ruleId, audit);
            case ["client-address"]:
                return method == "GET" ? ClientAddressAsync(context) : MethodNotAllowedAsync(context, "GET");
            default:
                return Problem.WriteAsync(context, StatusCodes.Status404NotFound, "not_found", "Not Found", "No such management API route; see /api/admin/openapi.json.");
        }
    }

    private static Task WithIdAsync(HttpContext context, string id, Func<Task> then) =>
        ApiKey.IsValidId(id) ? then() : Problem.InvalidAsync(context, [new FieldError("id", "Not a key id (16 characters of a-z and 2-7).")]);

    private static Task MethodNotAllowedAsync(HttpContext context, string allow) =>
        Problem.WriteAsync(context, StatusCodes.Status405MethodNotAllowed, "method_not_allowed", "Method Not Allowed",
            $"This route accepts {allow}.", headers: [new("Allow", allow)]);

    private static Task KeyNotFoundAsync(HttpContext context) =>
        Problem.WriteAsync(context, StatusCodes.Status404NotFound, "key_not_found", "Not Found", "There is no key with that id.");

    // ---- operations ----

    private async Task CreateAsync(HttpContext context, AuditContext audit)
    {
        var (body, bytes, ok) = await ReadJsonAsync(context, required: true).ConfigureAwait(false);
        if (!ok)
        {
            await AuditAsync(audit, "key.create", null, "invalid", "body").ConfigureAwait(false);
            return;
        }
        var errors = new List<FieldError>();
        var idempotencyHeader = context.Request.Headers["Idempotency-Key"];
        var idempotencyKey = idempotencyHeader.ToString();
        if (idempotencyHeader.Count > 1 || (idempotencyKey.Length > 0 && !IdempotencyStore.IsValidKey(idempotencyKey)))
        {
            // Two headers would be read as one value joined with a comma: refused rather than guessed at.
            errors.Add(new("Idempotency-Key", "Once, with 1-255 visible ASCII characters."));
            idempotencyKey = "";
        }
        var creation = _requests.ParseCreation(body!.Value, errors);
        if (creation is null || errors.Count > 0)
        {
            await AuditAsync(audit, "key.create", null, "invalid", Fields(errors)).ConfigureAwait(false);
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }

        var key = ApiKey.Generate();
        if (idempotencyKey.Length > 0)
        {
            var claim = await _idempotency.ClaimAsync(audit.Actor, idempotencyKey, IdempotencyStore.HashRequest(bytes), key.Id, context.RequestAborted).ConfigureAwait(false);
            if (!claim.IsNew)
            {
                await ReplayCreateAsync(context, claim, bytes).ConfigureAwait(false);
                return;
            }
        }
        IssuedKey issued;
        try
        {
            issued = await _keys.CreateAsync(creation, key, context.RequestAborted).ConfigureAwait(false);
        }
        catch when (idempotencyKey.Length > 0)
        {
            await _idempotency.ReleaseAsync(audit.Actor, idempotencyKey, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        Log.KeyCreated(_logger, issued.Record.Id, audit.Actor);
        await AuditAsync(audit, "key.create", issued.Record.Id, "success").ConfigureAwait(false);
        context.Response.Headers.Location = "/api/admin/keys/" + issued.Record.Id;
        await WriteJsonAsync(context, StatusCodes.Status201Created, new
        {
            key = issued.Value,
            keyShown = true,
            note = "The key is shown only now. Store it; it cannot be retrieved again (rotate to get a new one).",
            record = KeyView.From(issued.Record),
        }).ConfigureAwait(false);
    }

    private async Task ReplayCreateAsync(HttpContext context, IdempotencyClaim claim, byte[] bytes)
    {
        if (claim.RequestHash != IdempotencyStore.HashRequest(bytes))
        {
            await Problem.WriteAsync(context, StatusCodes.Status422UnprocessableEntity, "idempotency_key_reused", "Unprocessable Content",
                "This Idempotency-Key was used for a different request body.").ConfigureAwait(false);
            return;
        }
        var record = await _store.FindAsync(claim.KeyId, context.RequestAborted).ConfigureAwait(false);
        if (record is null)
        {
            await Problem.WriteAsync(context, StatusCodes.Status409Conflict, "idempotent_request_in_progress", "Conflict",
                "A create with this Idempotency-Key is still in progress; retry shortly.", headers: [new("Retry-After", "1")]).ConfigureAwait(false);
            return;
        }
        context.Response.Headers["Idempotent-Replayed"] = "true";
        context.Response.Headers.Location = "/api/admin/keys/" + record.Id;
        await WriteJsonAsync(context, StatusCodes.Status200OK, new
        {
            key = (string?)null,
            keyShown = false,
            note = "This create was already done with this Idempotency-Key. The key value is never stored, so it cannot be shown again; if it was lost, rotate the key.",
            record = KeyView.From(record),
        }).ConfigureAwait(false);
    }

    private async Task ListAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var errors = new List<FieldError>();
        RefuseUnknownParameters(query, ["owner", "status", "upstream", "limit", "continuationToken"], errors);
        var owner = OptionalParameter(query, "owner", KeyRequests.MaxOwnerLength, errors);
        KeyStatus? status = null;
        if (OptionalParameter(query, "status", 16, errors) is { } s)
        {
            if (Enum.TryParse<KeyStatus>(s, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed) && !s.Any(char.IsDigit))
            {
                status = parsed;
            }
            else
            {
                errors.Add(new("status", "One of active, disabled, revoked."));
            }
        }
        var upstream = OptionalParameter(query, "upstream", 64, errors);
        if (upstream is not null && upstream != KeyRecord.AnyUpstream && !Proxying.UpstreamCatalog.IsValidName(upstream))
        {
            errors.Add(new("upstream", "Not an upstream name."));
        }
        var limit = PageSize(query, errors);
        string? after = null;
        if (OptionalParameter(query, "continuationToken", 200, errors) is { } token)
        {
            after = DecodeKeyToken(token);
            if (after is null)
            {
                errors.Add(new("continuationToken", "Not a token from this API."));
            }
        }
        if (errors.Count > 0)
        {
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        var (records, next) = await _store.QueryAsync(owner, status, upstream, after, limit, context.RequestAborted).ConfigureAwait(false);
        await WriteJsonAsync(context, StatusCodes.Status200OK, new
        {
            items = records.Select(KeyView.From),
            continuationToken = next is null ? null : Base64Url.EncodeToString(Encoding.ASCII.GetBytes("k:" + next)),
        }).ConfigureAwait(false);
    }

    private async Task GetAsync(HttpContext context, string id)
    {
        var record = await _store.FindAsync(id, context.RequestAborted).ConfigureAwait(false);
        if (record is null)
        {
            await KeyNotFoundAsync(context).ConfigureAwait(false);
            return;
        }
        await WriteJsonAsync(context, StatusCodes.Status200OK, KeyView.From(record)).ConfigureAwait(false);
    }

    private async Task UpdateAsync(HttpContext context, string id, AuditContext audit)
    {
        var (body, _, ok) = await ReadJsonAsync(context, required: true).ConfigureAwait(false);
        if (!ok)
        {
            await AuditAsync(audit, "key.update", id, "invalid", "body").ConfigureAwait(false);
            return;
        }
        var errors = new List<FieldError>();
        var update = _requests.ParseUpdate(body!.Value, errors);
        if (update is null)
        {
            await AuditAsync(audit, "key.update", id, "invalid", Fields(errors)).ConfigureAwait(false);
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        await ChangeAsync(context, audit, "key.update", id, "fields: " + string.Join(", ", update.FieldNames()),
            () => _keys.UpdateAsync(id, update, context.RequestAborted)).ConfigureAwait(false);
    }

    private Task SetStatusAsync(HttpContext context, string id, string verb, AuditContext audit) => verb switch
    {
        "revoke" => ChangeAsync(context, audit, "key.revoke", id, null, () => _keys.RevokeAsync(id, context.RequestAborted)),
        "disable" => ChangeAsync(context, audit, "key.disable", id, null, () => _keys.SetEnabledAsync(id, enabled: false, context.RequestAborted)),
        _ => ChangeAsync(context, audit, "key.enable", id, null, () => _keys.SetEnabledAsync(id, enabled: true, context.RequestAborted)),
    };

    private async Task ChangeAsync(HttpContext context, AuditContext audit, string action, string id, string? detail, Func<Task<KeyRecord?>> change)
    {
        KeyRecord? record;
        try
        {
            record = await change().ConfigureAwait(false);
        }
        catch (KeyStateConflictException e)
        {
            await AuditAsync(audit, action, id, "conflict", detail).ConfigureAwait(false);
            await Problem.WriteAsync(context, StatusCodes.Status409Conflict, "key_state_conflict", "Conflict", e.Message).ConfigureAwait(false);
            return;
        }
        catch (KeyUpdateRejectedException e)
        {
            await AuditAsync(audit, action, id, "invalid", "fields: " + e.Field).ConfigureAwait(false);
            await Problem.InvalidAsync(context, [new FieldError(e.Field, e.Message)]).ConfigureAwait(false);
            return;
        }
        if (record is null)
        {
            await AuditAsync(audit, action, id, "not_found", detail).ConfigureAwait(false);
            await KeyNotFoundAsync(context).ConfigureAwait(false);
            return;
        }
        Log.KeyChanged(_logger, action, id, audit.Actor);
        await AuditAsync(audit, action, id, "success", detail).ConfigureAwait(false);
        await WriteJsonAsync(context, StatusCodes.Status200OK, KeyView.From(record)).ConfigureAwait(false);
    }

    private async Task RotateAsync(HttpContext context, string id, AuditContext audit)
    {
        var (body, _, ok) = await ReadJsonAsync(context, required: false).ConfigureAwait(false);
        if (!ok)
        {
            await AuditAsync(audit, "key.rotate", id, "invalid", "body").ConfigureAwait(false);
            return;
        }
        var errors = new List<FieldError>();
        var grace = KeyRequests.ParseRotation(body, _options.CurrentValue.Admin.MaxRotationGracePeriod, errors);
        if (grace is null)
        {
            await AuditAsync(audit, "key.rotate", id, "invalid", Fields(errors)).ConfigureAwait(false);
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        var detail = "grace: " + ((long)grace.Value.TotalSeconds).ToString(CultureInfo.InvariantCulture) + " s";
        IssuedKey? issued;
        try
        {
            issued = await _keys.RotateAsync(id, grace.Value, context.RequestAborted).ConfigureAwait(false);
        }
        catch (KeyStateConflictException e)
        {
            await AuditAsync(audit, "key.rotate", id, "conflict", detail).ConfigureAwait(false);
            await Problem.WriteAsync(context, StatusCodes.Status409Conflict, "key_state_conflict", "Conflict", e.Message).ConfigureAwait(false);
            return;
        }
        if (issued is null)
        {
            await AuditAsync(audit, "key.rotate", id, "not_found", detail).ConfigureAwait(false);
            await KeyNotFoundAsync(context).ConfigureAwait(false);
            return;
        }
        Log.KeyChanged(_logger, "key.rotate", id, audit.Actor);
        await AuditAsync(audit, "key.rotate", id, "success", detail).ConfigureAwait(false);
        await WriteJsonAsync(context, StatusCodes.Status200OK, new
        {
            key = issued.Value,
            keyShown = true,
            note = "The new key is shown only now. The old one works until previousSecretExpiresAt.",
            record = KeyView.From(issued.Record),
        }).ConfigureAwait(false);
    }

    private async Task UsageAsync(HttpContext context, string id)
    {
        var query = context.Request.Query;
        var errors = new List<FieldError>();
        RefuseUnknownParameters(query, ["from", "to"], errors);
        var (from, to) = TimeRange(query, TimeSpan.FromDays(1), errors);
        if (errors.Count > 0)
        {
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        if (await _store.FindAsync(id, context.RequestAborted).ConfigureAwait(false) is null)
        {
            await KeyNotFoundAsync(context).ConfigureAwait(false);
            return;
        }
        var rows = await _usage.ReadAsync(id, from, to, context.RequestAborted).ConfigureAwait(false);
        await WriteJsonAsync(context, StatusCodes.Status200OK, new
        {
            keyId = id,
            from,
            to,
            totals = new
            {
                requests = rows.Sum(r => r.Requests),
                inputTokens = rows.Sum(r => r.InputTokens),
                outputTokens = rows.Sum(r => r.OutputTokens),
                cachedInputTokens = rows.Sum(r => r.CachedInputTokens),
                costUsd = rows.Sum(r => r.CostMicroUsd) / 1_000_000m,
                requestsWithoutUsage = rows.Sum(r => r.RequestsWithoutUsage),
            },
            hours = rows.Select(r => new
            {
                hour = r.Hour, upstream = r.Upstream, model = r.Model.Length == 0 ? null : r.Model, backend = r.Backend, requests = r.Requests, inputTokens = r.InputTokens,
                outputTokens = r.OutputTokens, cachedInputTokens = r.CachedInputTokens, costUsd = r.CostMicroUsd / 1_000_000m,
                requestsWithoutUsage = r.RequestsWithoutUsage,
            }),
        }).ConfigureAwait(false);
    }

    // What the gateway takes the caller's address to be, and from where: how an operator checks FuncProxy:ClientIpHeader
    // and FuncProxy:TrustedProxies on a deployment (docs/deploy.md). Addresses only; no header value is echoed.
    private Task ClientAddressAsync(HttpContext context)
    {
        var client = _clientAddress.ResolveClient(context);
        var connection = context.Connection.RemoteIpAddress;
        return WriteJsonAsync(context, StatusCodes.Status200OK, new
        {
            clientIp = client.Address,
            source = client.Source,
            proxyHop = client.IsProxyHop,
            connectionIp = connection is null ? "unknown" : (connection.IsIPv4MappedToIPv6 ? connection.MapToIPv4() : connection).ToString(),
        });
    }

    private async Task AuditQueryAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var errors = new List<FieldError>();
        RefuseUnknownParameters(query, ["keyId", "from", "to", "limit", "continuationToken"], errors);
        var keyId = OptionalParameter(query, "keyId", 16, errors);
        if (keyId is not null && !ApiKey.IsValidId(keyId))
        {
            errors.Add(new("keyId", "Not a key id (16 characters of a-z and 2-7)."));
        }
        var (from, to) = TimeRange(query, TimeSpan.FromDays(7), errors);
        var limit = PageSize(query, errors);
        var cursor = OptionalParameter(query, "continuationToken", 200, errors);
        if (cursor is not null && !AuditLog.IsValidCursor(cursor))
        {
            errors.Add(new("continuationToken", "Not a token from this API."));
        }
        if (errors.Count > 0)
        {
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        IReadOnlyList<AuditEntry> entries;
        string? next;
        try
        {
            (entries, next) = await _audit.QueryAsync(keyId, from, to, limit, cursor, context.RequestAborted).ConfigureAwait(false);
        }
        catch (FormatException)
        {
            await Problem.InvalidAsync(context, [new FieldError("continuationToken", "The token belongs to another query.")]).ConfigureAwait(false);
            return;
        }
        await WriteJsonAsync(context, StatusCodes.Status200OK, new { items = entries, continuationToken = next }).ConfigureAwait(false);
    }

    private async Task ServeOpenApiAsync(HttpContext context)
    {
        if (context.Request.Method is not ("GET" or "HEAD"))
        {
            await MethodNotAllowedAsync(context, "GET").ConfigureAwait(false);
            return;
        }
        var document = OpenApiDocument.Value;
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = document.Length;
        if (context.Request.Method == "GET")
        {
            await context.Response.Body.WriteAsync(document, context.RequestAborted).ConfigureAwait(false);
        }
    }

    // ---- helpers ----

    private async Task AuditAsync(AuditContext audit, string action, string? keyId, string result, string? detail = null)
    {
        try
        {
            await _audit.WriteAsync(audit, action, keyId, result, detail, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RequestFailedException or HttpRequestException or OperationCanceledException)
        {
            // The operation itself is done (or refused); losing its audit row is logged loudly rather than undoing it.
            Log.AuditWriteFailed(_logger, action, keyId ?? "(none)", e);
        }
    }

    private static string Fields(List<FieldError> errors) => "fields: " + string.Join(", ", errors.Select(e => e.Field).Distinct());

    private static async Task<(JsonElement? Body, byte[] Bytes, bool Ok)> ReadJsonAsync(HttpContext context, bool required)
    {
        var request = context.Request;
        if (request.ContentLength > MaxBodyBytes)
        {
            await TooLargeAsync(context).ConfigureAwait(false);
            return (null, [], false);
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int n;
        while ((n = await request.Body.ReadAsync(chunk, context.RequestAborted).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + n > MaxBodyBytes)
            {
                await TooLargeAsync(context).ConfigureAwait(false);
                return (null, [], false);
            }
            buffer.Write(chunk, 0, n);
        }
        var bytes = buffer.ToArray();
        if (bytes.Length == 0)
        {
            if (!required)
            {
                return (null, bytes, true);
            }
            await Problem.InvalidAsync(context, [new FieldError("$", "A JSON object body is required.")]).ConfigureAwait(false);
            return (null, bytes, false);
        }
        if (request.ContentType is not { } type || !(type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) || type.StartsWith("application/merge-patch+json", StringComparison.OrdinalIgnoreCase)))
        {
            await Problem.WriteAsync(context, StatusCodes.Status415UnsupportedMediaType, "unsupported_media_type", "Unsupported Media Type",
                "Send the body as application/json.").ConfigureAwait(false);
            return (null, bytes, false);
        }
        using var document = JsonText.TryParse(bytes, MaxJsonDepth, out var error);
        if (document is null)
        {
            await Problem.InvalidAsync(context, [new FieldError("$", error!)], error!).ConfigureAwait(false);
            return (null, bytes, false);
        }
        return (document.RootElement.Clone(), bytes, true);
    }

    private static Task TooLargeAsync(HttpContext context) =>
        Problem.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "request_too_large", "Payload Too Large",
            $"Management request bodies are at most {MaxBodyBytes} bytes.");

    private static void RefuseUnknownParameters(IQueryCollection query, string[] known, List<FieldError> errors)
    {
        foreach (var name in query.Keys)
        {
            if (!known.Contains(name, StringComparer.Ordinal))
            {
                errors.Add(new(name.Length <= 64 ? name : name[..64] + "…", "Unknown query parameter. Known: " + string.Join(", ", known) + "."));
            }
        }
    }

    private static string? OptionalParameter(IQueryCollection query, string name, int maxLength, List<FieldError> errors)
    {
        if (!query.TryGetValue(name, out var values))
        {
            return null;
        }
        if (values.Count != 1 || string.IsNullOrEmpty(values[0]))
        {
            errors.Add(new(name, "Give it once, with a value."));
            return null;
        }
        var value = values[0]!;
        if (value.Length > maxLength || value.Any(char.IsControl))
        {
            errors.Add(new(name, $"At most {maxLength} characters, no control characters."));
            return null;
        }
        return value;
    }

    private static int PageSize(IQueryCollection query, List<FieldError> errors)
    {
        if (OptionalParameter(query, "limit", 5, errors) is not { } text)
        {
            return DefaultPageSize;
        }
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) || limit < 1 || limit > MaxPageSize)
        {
            errors.Add(new("limit", $"A whole number from 1 to {MaxPageSize}."));
            return DefaultPageSize;
        }
        return limit;
    }

    private (DateTimeOffset From, DateTimeOffset To) TimeRange(IQueryCollection query, TimeSpan defaultSpan, List<FieldError> errors)
    {
        var now = _time.GetUtcNow();
        var to = now.AddSeconds(1);
        if (OptionalParameter(query, "to", 40, errors) is { } t)
        {
            if (KeyRequests.TryParseTimestamp(t, out var parsed))
            {
                to = parsed;
            }
            else
            {
                errors.Add(new("to", "An RFC 3339 date-time with an offset, e.g. 2027-01-31T12:00:00Z."));
            }
        }
        var from = to - defaultSpan;
        if (OptionalParameter(query, "from", 40, errors) is { } f)
        {
            if (KeyRequests.TryParseTimestamp(f, out var parsed))
            {
                from = parsed;
            }
            else
            {
                errors.Add(new("from", "An RFC 3339 date-time with an offset, e.g. 2027-01-01T00:00:00Z."));
            }
        }
        if (from >= to)
        {
            errors.Add(new("from", "Must be before 'to'."));
        }
        else if (to - from > AuditLog.MaxRange)
        {
            errors.Add(new("from", $"The range spans at most {AuditLog.MaxRange.TotalDays} days."));
        }
        return (from, to);
    }

    private static string? DecodeKeyToken(string token)
    {
        try
        {
            var text = Encoding.ASCII.GetString(Base64Url.DecodeFromChars(token));
            return text.StartsWith("k:", StringComparison.Ordinal) && ApiKey.IsValidId(text[2..]) ? text[2..] : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static async Task WriteJsonAsync<T>(HttpContext context, int status, T value)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        await JsonSerializer.SerializeAsync(context.Response.Body, value, Json, context.RequestAborted).ConfigureAwait(false);
    }

    private static byte[] LoadOpenApi()
    {
        using var stream = typeof(AdminHandler).Assembly.GetManifestResourceStream("FuncProxy.Admin.openapi.json")
            ?? throw new InvalidOperationException("The OpenAPI document is not embedded.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    public void Dispose() => _rateLimiter.Dispose();

    private static partial class Log
    {
        [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Admin authentication failed from {ClientIp} as {Actor}: {Reason}.")]
        public static partial void AuthenticationFailed(ILogger logger, string clientIp, string actor, string reason);

        [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Locked out {ClientIp} from the management API for {Duration} after repeated failed authentications.")]
        public static partial void LockedOut(ILogger logger, string clientIp, TimeSpan duration);

        [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Admin calls from {ClientIp} are over their rate limit.")]
        public static partial void RateLimited(ILogger logger, string clientIp);

        [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "Key {KeyId} created by {Actor}.")]
        public static partial void KeyCreated(ILogger logger, string keyId, string actor);

        [LoggerMessage(EventId = 4005, Level = LogLevel.Information, Message = "{Action} on key {KeyId} by {Actor}.")]
        public static partial void KeyChanged(ILogger logger, string action, string keyId, string actor);

        [LoggerMessage(EventId = 4006, Level = LogLevel.Error, Message = "Writing the audit event {Action} for key {KeyId} failed.")]
        public static partial void AuditWriteFailed(ILogger logger, string action, string keyId, Exception exception);

        [LoggerMessage(EventId = 4007, Level = LogLevel.Error, Message = "A management call failed on storage.")]
        public static partial void StorageFailed(ILogger logger, Exception exception);
    }
}

/// <summary>A key record as the management API and the CLI show it: never the secret or its hash.</summary>
public sealed record KeyView(
    string Id,
    string Redacted,
    string Name,
    string? Owner,
    string Status,
    DateTimeOffset CreatedAt,
    DateTimeOffset? ExpiresAt,
    IReadOnlyList<string> AllowedUpstreams,
    KeyLimitsView? Limits,
    IReadOnlyDictionary<string, string> Metadata,
    DateTimeOffset? PreviousSecretExpiresAt,
    IReadOnlyList<string> AllowedModels,
    IReadOnlyDictionary<string, string> ModelAliases,
    IReadOnlyDictionary<string, KeyLimitsView> ModelLimits,
    IReadOnlyList<string> AllowedOrigins)
{
    public static KeyView From(KeyRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        return new(r.Id, ApiKey.Redact(r.Id), r.Name, r.Owner, r.Status.ToString().ToLowerInvariant(), r.CreatedAt, r.ExpiresAt,
            r.AllowedUpstreams, KeyLimitsView.From(r.Limits), r.Metadata, r.PreviousSecretHash is null ? null : r.PreviousSecretExpiresAt,
            r.AllowedModels, r.ModelAliases, r.ModelLimits.ToDictionary(m => m.Key, m => KeyLimitsView.From(m.Value)!, StringComparer.Ordinal),
            r.AllowedOrigins);
    }
}

/// <summary>A key's limits as the API shows them: counts as stored, budgets in US dollars (stored as micro-dollars).</summary>
public sealed record KeyLimitsView(
    long? RequestsPerSecond, long? RequestsPerMinute, long? RequestsPerHour, long? TokensPerMinute, long? RequestsPerDay,
    long? RequestsPerMonth, long? TokensPerDay, long? TokensPerMonth, decimal? BudgetPerDayUsd, decimal? BudgetPerMonthUsd)
{
    public static KeyLimitsView? From(KeyLimits? l) => l is null ? null : new(
        l.RequestsPerSecond, l.RequestsPerMinute, l.RequestsPerHour, l.TokensPerMinute, l.RequestsPerDay, l.RequestsPerMonth,
        l.TokensPerDay, l.TokensPerMonth, l.BudgetPerDayMicroUsd / 1_000_000m, l.BudgetPerMonthMicroUsd / 1_000_000m);
}
