using System.Collections.Frozen;
using FuncProxy.Proxying;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Backends;

/// <summary>
/// One backend of an upstream's pool: where calls go, how they are authenticated, how its model names map to its
/// deployments, and its health (circuit breaker and the room its rate-limit headers last reported).
/// </summary>
public sealed class Backend
{
    /// <summary>The name of the one backend an upstream configured with a plain <c>BaseUrl</c> has.</summary>
    public const string DefaultName = "default";

    // How long a backend whose x-ratelimit-remaining-* said 0 is passed over while others of its priority have room.
    private static readonly TimeSpan NoRoomFor = TimeSpan.FromSeconds(10);

    private long _noRoomUntilTicks;

    internal Backend(string upstream, string name, BackendOptions options, TimeSpan upstreamTimeout, string? defaultClientId, BreakerOptions breaker)
    {
        Upstream = upstream;
        Name = name;
        var baseUrl = options.BaseUrl ?? throw new ArgumentException($"Backend '{upstream}/{name}' has no BaseUrl.", nameof(options));
        Origin = baseUrl.GetLeftPart(UriPartial.Authority);
        BasePath = baseUrl.AbsolutePath.TrimEnd('/');
        Priority = options.Priority;
        Weight = options.Weight;
        Auth = options.EffectiveAuth;
        SecretName = Auth == BackendAuth.Secret ? options.SecretName : null;
        AuthHeader = options.AuthHeader;
        AuthScheme = UpstreamOptions.SchemeFor(options.AuthHeader, options.AuthScheme);
        TokenScope = options.TokenScope;
        ManagedIdentityClientId = string.IsNullOrWhiteSpace(options.ManagedIdentityClientId) ? defaultClientId : options.ManagedIdentityClientId;
        RequestConfig = new ForwarderRequestConfig { ActivityTimeout = options.Timeout ?? upstreamTimeout };
        Deployments = options.Deployments.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);
        Breaker = new CircuitBreaker(breaker);
    }

    public string Upstream { get; }
    public string Name { get; }

    /// <summary>Scheme, host and port: calls to this backend go here and nowhere else.</summary>
    public string Origin { get; }

    /// <summary>The base path without a trailing slash ("" for the root); forwarded paths stay below it.</summary>
    public string BasePath { get; }

    public int Priority { get; }
    public int Weight { get; }
    public BackendAuth Auth { get; }
    public string? SecretName { get; }
    public string AuthHeader { get; }

    /// <summary>This backend alone, as a collection of backends tried (one array per backend, not one per call).</summary>
    internal Backend[] Alone => _alone ??= [this];

    private Backend[]? _alone;

    // The last credential and its header value ("Bearer {credential}"): the same string on every call until the secret or
    // token changes, instead of a new one per call. One reference, swapped whole, so readers never see a mixed pair.
    private sealed record AuthValue(string Credential, string Value);

    private AuthValue? _authValue;

    /// <summary>The value of <see cref="AuthHeader"/> for <paramref name="credential"/>: with <see cref="AuthScheme"/> in front when there is one.</summary>
    internal string AuthHeaderValue(string credential)
    {
        if (AuthScheme.Length == 0)
        {
            return credential;
        }
        var last = Volatile.Read(ref _authValue);
        if (last is not null && ReferenceEquals(last.Credential, credential))
        {
            return last.Value;
        }
        var value = string.Concat(AuthScheme, " ", credential);
        Volatile.Write(ref _authValue, new AuthValue(credential, value));
        return value;
    }
    public string AuthScheme { get; }
    public string TokenScope { get; }
    public string? ManagedIdentityClientId { get; }
    public ForwarderRequestConfig RequestConfig { get; }

    /// <summary>Client model or deployment name -> this backend's deployment name.</summary>
    public FrozenDictionary<string, string> Deployments { get; }

    internal CircuitBreaker Breaker { get; }

    /// <summary>
    /// The URL for a client path on this backend. An Azure OpenAI <c>openai/deployments/{name}/</c> segment is mapped
    /// through <see cref="Deployments"/>.
    /// </summary>
    public bool TryBuildTarget(UpstreamPath path, out Uri target)
    {
        ArgumentNullException.ThrowIfNull(path);
        // Clients call the same few paths over and over: a built (immutable) Uri is reused rather than escaped, concatenated
        // and parsed again on every call. Bounded, so a client sending endless distinct paths only stops the caching.
        if (_targets.TryGetValue((path.Path, path.Query), out var cached))
        {
            target = cached;
            return true;
        }
        if (!TryBuildTargetCore(path, out target))
        {
            return false;
        }
        if (_targets.Count < MaxCachedTargets)
        {
            _targets.TryAdd((path.Path, path.Query), target);
        }
        return true;
    }

    private const int MaxCachedTargets = 256;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Path, string Query), Uri> _targets = new();

    private bool TryBuildTargetCore(UpstreamPath path, out Uri target)
    {
        var segments = path.Segments;
        if (Deployments.Count > 0 && DeploymentSegment(segments) is var i and >= 0 && Deployments.TryGetValue(segments[i], out var deployment))
        {
            var mapped = segments.ToArray();
            mapped[i] = deployment;
            segments = mapped;
        }
        return UpstreamPath.TryBuild(Origin, BasePath, segments, path.Query, out target);
    }

    /// <summary>The model name a call should carry in its JSON <c>model</c> on this backend, or null to leave the body as it is.</summary>
    internal string? MapModel(string? model) =>
        model is not null && Deployments.TryGetValue(model, out var deployment) && deployment != model ? deployment : null;

    /// <summary>True for a path of Azure OpenAI's deployments shape, whose deployment is in the path rather than the body.</summary>
    internal bool NamesDeploymentInPath(UpstreamPath path) =>
        path.Path.Contains("deployments", StringComparison.OrdinalIgnoreCase) && DeploymentSegment(path.Segments) >= 0;

    // The index of {deployment} in ".../openai/deployments/{deployment}/...", where "openai" may end the base URL instead.
    private int DeploymentSegment(IReadOnlyList<string> segments)
    {
        for (var i = 0; i + 1 < segments.Count; i++)
        {
            if (!string.Equals(segments[i], "deployments", StringComparison.OrdinalIgnoreCase) || segments[i + 1].Length == 0)
            {
                continue;
            }
            var afterOpenAI = i > 0
                ? string.Equals(segments[i - 1], "openai", StringComparison.OrdinalIgnoreCase)
                : BasePath.EndsWith("/openai", StringComparison.OrdinalIgnoreCase);
            if (afterOpenAI)
            {
                return i + 1;
            }
        }
        return -1;
    }

    /// <summary>True while this backend's last answer said it has no requests or tokens left (<c>x-ratelimit-remaining-*: 0</c>).</summary>
    internal bool HasNoRoom(DateTimeOffset now) => now.UtcTicks < Volatile.Read(ref _noRoomUntilTicks);

    /// <summary>Reads Azure OpenAI's (and OpenAI's) <c>x-ratelimit-remaining-requests</c> / <c>-tokens</c> from an answer.</summary>
    internal void ObserveRoom(HttpResponseMessage response, DateTimeOffset now)
    {
        var empty = IsZero(response, "x-ratelimit-remaining-requests") || IsZero(response, "x-ratelimit-remaining-tokens");
        if (empty)
        {
            Volatile.Write(ref _noRoomUntilTicks, (now + NoRoomFor).UtcTicks);
        }
        else if (response.Headers.Contains("x-ratelimit-remaining-requests") || response.Headers.Contains("x-ratelimit-remaining-tokens"))
        {
            Volatile.Write(ref _noRoomUntilTicks, 0);
        }
    }

    private static bool IsZero(HttpResponseMessage response, string header) =>
        response.Headers.TryGetValues(header, out var values) && values.FirstOrDefault() is { } value
        && long.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var remaining) && remaining <= 0;
}
