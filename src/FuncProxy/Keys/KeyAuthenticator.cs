using FuncProxy.EntraId;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace FuncProxy.Keys;

/// <summary>Why a presented key was refused. Only logs and metrics see this; every client gets the same 401.</summary>
public enum KeyRefusal
{
    None,
    Missing,
    Malformed,
    UnknownId,
    WrongSecret,
    Disabled,
    Revoked,
    Expired,
    /// <summary>An Entra ID token that does not validate (signature, issuer, audience, lifetime, shape).</summary>
    InvalidToken,
    /// <summary>A valid token of another tenant, or without the required scope (delegated) or app role (app).</summary>
    TokenNotPermitted,
    /// <summary>A valid, permitted token that no rule maps to a key record.</summary>
    UnmappedToken,
}

/// <summary>The outcome of authenticating a request. <see cref="ByToken"/>: an Entra ID token was presented, not a key.</summary>
public readonly record struct KeyAuthentication(KeyRecord? Record, KeyRefusal Refusal, string? KeyId, bool ByToken = false)
{
    public bool Succeeded => Record is not null && Refusal == KeyRefusal.None;
}

/// <summary>
/// Finds the client key in the request (<c>Authorization: Bearer</c>, <c>x-api-key</c> or <c>api-key</c>, whichever the
/// client's SDK sends), checks its shape and checksum without I/O, then its record and secret hash. When client tokens are
/// configured, a JWT-shaped <c>Authorization: Bearer</c> value (never one starting <c>fpk_</c>) goes to
/// <see cref="ClientTokenAuthenticator"/> instead, which maps it to a key record.
/// </summary>
public sealed class KeyAuthenticator
{
    /// <summary>The request headers that may carry a client key; all are removed before forwarding.</summary>
    public static readonly string[] CredentialHeaders = ["Authorization", "x-api-key", "api-key"];

    private readonly KeyRecordCache _cache;
    private readonly TimeProvider _time;
    private readonly ClientTokenAuthenticator _tokens;

    public KeyAuthenticator(KeyRecordCache cache, TimeProvider time, ClientTokenAuthenticator tokens)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(tokens);
        _cache = cache;
        _time = time;
        _tokens = tokens;
    }

    public async ValueTask<KeyAuthentication> AuthenticateAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        // The key is read where it stands in the header (no substring), its id looked up and its secret hashed from there.
        if (FindPresentedKey(request.Headers) is not { } presented)
        {
            return new(null, KeyRefusal.Missing, null);
        }
        if (IsToken(request.Headers, presented.Span) && _tokens.IsEnabled)
        {
            return await _tokens.AuthenticateAsync(presented.ToString(), cancellationToken).ConfigureAwait(false);
        }
        if (!ApiKey.TryLocate(presented.Span, out var idRange, out var secretRange, out var checksumRange))
        {
            return new(null, KeyRefusal.Malformed, null);
        }
        // The checksum keeps made-up keys away from storage, so it is checked before the lookup: by its SHA-256, unless this
        // instance already verified this checksum for this id on a key whose secret matched (then it is per key, not per call).
        var checksumKnown = _cache.IsVerifiedChecksum(presented.Span[idRange], presented.Span[checksumRange]);
        if (!checksumKnown && !ApiKey.ChecksumMatches(presented.Span))
        {
            return new(null, KeyRefusal.Malformed, null);
        }
        var lookup = _cache.GetAsync(presented.Span[idRange], cancellationToken);
        var record = lookup.IsCompletedSuccessfully ? lookup.Result : await lookup.ConfigureAwait(false);
        if (record is null)
        {
            return new(null, KeyRefusal.UnknownId, presented.Span[idRange].ToString());
        }
        var id = record.Id;
        var now = _time.GetUtcNow();
        if (!record.SecretMatches(presented.Span[secretRange], now))
        {
            return new(null, KeyRefusal.WrongSecret, id);
        }
        if (!checksumKnown)
        {
            _cache.RememberChecksum(presented.Span[idRange], presented.Span[checksumRange]);
        }
        return record.Status switch
        {
            KeyStatus.Revoked => new(null, KeyRefusal.Revoked, id),
            KeyStatus.Disabled => new(null, KeyRefusal.Disabled, id),
            _ when !record.IsUsableAt(now) => new(null, KeyRefusal.Expired, id),
            _ => new(record, KeyRefusal.None, id),
        };
    }

    /// <summary>
    /// True when what was presented is a JWT in <c>Authorization</c>: a FuncProxy key always starts with <c>fpk_</c> and a JWT
    /// with <c>eyJ</c> (its base64url JSON header), so the two are told apart without parsing either.
    /// </summary>
    private static bool IsToken(IHeaderDictionary headers, ReadOnlySpan<char> presented) =>
        !presented.StartsWith(ApiKey.Prefix, StringComparison.Ordinal)
        && EntraTokenValidator.LooksLikeJwt(presented)
        && !StringValues.IsNullOrEmpty(headers.Authorization);

    /// <summary>The first key-bearing header present, in the order the SDKs use, as a slice of its value; null when none.</summary>
    internal static ReadOnlyMemory<char>? FindPresentedKey(IHeaderDictionary headers)
    {
        if (headers.TryGetValue("Authorization", out var authorization) && !StringValues.IsNullOrEmpty(authorization))
        {
            var value = authorization.ToString().AsMemory().Trim();
            const string Bearer = "Bearer ";
            return value.Span.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase) ? value[Bearer.Length..].Trim() : value;
        }
        foreach (var name in (ReadOnlySpan<string>)["x-api-key", "api-key"])
        {
            if (headers.TryGetValue(name, out var v) && !StringValues.IsNullOrEmpty(v))
            {
                return v.ToString().AsMemory().Trim();
            }
        }
        return null;
    }
}
