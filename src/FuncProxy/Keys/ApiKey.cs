using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;

namespace FuncProxy.Keys;

/// <summary>
/// A client API key: <c>fpk_&lt;id&gt;_&lt;secret&gt;&lt;checksum&gt;</c>.
/// The id (16 base32 characters, 80 bits) names the record; the secret (43 base62 characters, 256 bits from a CSPRNG)
/// is never stored, only its hash; the 6-character checksum lets a typo or a forged key be refused with no storage round trip.
/// Admin keys for the management API have the same shape with the prefix <c>fpa_</c> (<see cref="AdminPrefix"/>); the prefix
/// is part of the checksum, so one kind can never be passed off as the other.
/// </summary>
public readonly struct ApiKey
{
    public const string Prefix = "fpk_";
    public const string AdminPrefix = "fpa_";
    public const int IdLength = 16;
    public const int SecretLength = 43;
    public const int ChecksumLength = 6;
    public const int TotalLength = BodyLength + ChecksumLength;

    // "{prefix}{id}_{secret}": what the checksum covers, and where the checksum starts.
    private const int BodyLength = 4 + IdLength + 1 + SecretLength;

    private const string IdAlphabet = "abcdefghijklmnopqrstuvwxyz234567";
    private const string SecretAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    private readonly string? _prefix;

    private ApiKey(string id, string secret, string prefix = Prefix)
    {
        Id = id;
        Secret = secret;
        _prefix = prefix;
    }

    /// <summary><see cref="Prefix"/> for client keys, <see cref="AdminPrefix"/> for admin keys.</summary>
    public string KeyPrefix => _prefix ?? Prefix;

    /// <summary>True for an admin key (<c>fpa_</c>).</summary>
    public bool IsAdmin => KeyPrefix == AdminPrefix;

    /// <summary>The public half: the key record's id.</summary>
    public string Id { get; }

    /// <summary>The secret half. Never log it.</summary>
    public string Secret { get; }

    /// <summary>The full key as the client presents it. Shown once, at creation or rotation.</summary>
    public string Value => string.Concat(KeyPrefix, Id, "_", Secret, Checksum(KeyPrefix, Id, Secret));

    /// <summary>Makes a fresh key with a new id and secret.</summary>
    public static ApiKey Generate() => new(NewId(), NewSecret());

    /// <summary>Makes a fresh admin key (<c>fpa_</c>).</summary>
    public static ApiKey GenerateAdmin() => new(NewId(), NewSecret(), AdminPrefix);

    /// <summary>Makes a new secret for an existing id (rotation keeps the id so counters and usage carry on).</summary>
    public static ApiKey GenerateFor(string id)
    {
        if (!IsValidId(id))
        {
            throw new ArgumentException("Not a key id.", nameof(id));
        }
        return new(id, NewSecret());
    }

    public static string NewId() => RandomNumberGenerator.GetString(IdAlphabet, IdLength);

    private static string NewSecret() => RandomNumberGenerator.GetString(SecretAlphabet, SecretLength);

    /// <summary>Parses a presented key, checking shape and checksum only: no I/O, no timing that depends on the secret's content.</summary>
    public static bool TryParse(ReadOnlySpan<char> value, [NotNullWhen(true)] out ApiKey? key) => TryParse(value, Prefix, out key);

    /// <summary>
    /// Where the id, the secret and the checksum are in a presented client key, by its shape and alphabets alone: the
    /// checksum is not checked here (see <see cref="ChecksumMatches"/>). No strings are made: the request path looks the id
    /// up by span and hashes the secret from it.
    /// </summary>
    public static bool TryLocate(ReadOnlySpan<char> value, out Range id, out Range secret, out Range checksum)
    {
        id = default;
        secret = default;
        checksum = default;
        if (!HasShape(value, Prefix))
        {
            return false;
        }
        id = new Range(4, 4 + IdLength);
        secret = new Range(4 + IdLength + 1, BodyLength);
        checksum = new Range(BodyLength, TotalLength);
        return true;
    }

    /// <summary>True when the checksum of a key <see cref="TryLocate"/> located matches the rest of it (one SHA-256).</summary>
    public static bool ChecksumMatches(ReadOnlySpan<char> value)
    {
        // The checksum covers "{prefix}{id}_{secret}", which is exactly the start of the value: checked in place, on the stack.
        Span<char> expected = stackalloc char[ChecksumLength];
        Checksum(value[..BodyLength], expected);
        return value[BodyLength..].SequenceEqual(expected);
    }

    /// <summary>As <see cref="TryParse(ReadOnlySpan{char}, out ApiKey?)"/>, for an admin key (<c>fpa_</c>).</summary>
    public static bool TryParseAdmin(ReadOnlySpan<char> value, [NotNullWhen(true)] out ApiKey? key) => TryParse(value, AdminPrefix, out key);

    private static bool TryParse(ReadOnlySpan<char> value, string prefix, [NotNullWhen(true)] out ApiKey? key)
    {
        key = null;
        if (!IsWellFormed(value, prefix))
        {
            return false;
        }
        key = new ApiKey(value.Slice(4, IdLength).ToString(), value.Slice(4 + IdLength + 1, SecretLength).ToString(), prefix);
        return true;
    }

    private static bool IsWellFormed(ReadOnlySpan<char> value, string prefix) => HasShape(value, prefix) && ChecksumMatches(value);

    private static bool HasShape(ReadOnlySpan<char> value, string prefix)
    {
        if (value.Length != TotalLength || !value.StartsWith(prefix, StringComparison.Ordinal) || value[4 + IdLength] != '_')
        {
            return false;
        }
        var id = value.Slice(4, IdLength);
        var secret = value.Slice(4 + IdLength + 1, SecretLength);
        return !id.ContainsAnyExcept(IdAlphabet) && !secret.ContainsAnyExcept(SecretAlphabet);
    }

    /// <summary>True when <paramref name="id"/> has the shape of a key id (no I/O).</summary>
    public static bool IsValidId(string? id) => id is { Length: IdLength } && !id.AsSpan().ContainsAnyExcept(IdAlphabet);

    /// <summary>A short, non-secret label for logs and listings: <c>fpk_&lt;id&gt;_…</c>.</summary>
    public static string Redact(string id) => string.Concat(Prefix, id, "_…");

    // The checksum is integrity, not secrecy: the first 32 bits of SHA-256 over the key body, in base62.
    private static string Checksum(string prefix, string id, string secret)
    {
        Span<char> chars = stackalloc char[ChecksumLength];
        Checksum(string.Concat(prefix, id, "_", secret), chars);
        return new string(chars);
    }

    /// <param name="body">"{prefix}{id}_{secret}" (ASCII: checked against the alphabets before).</param>
    /// <param name="chars">Receives the <see cref="ChecksumLength"/> checksum characters.</param>
    private static void Checksum(ReadOnlySpan<char> body, Span<char> chars)
    {
        Span<byte> ascii = stackalloc byte[BodyLength];
        var length = Encoding.ASCII.GetBytes(body, ascii);
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(ascii[..length], hash);
        var n = (ulong)BitConverter.ToUInt32(hash[..4]);
        for (var i = ChecksumLength - 1; i >= 0; i--)
        {
            chars[i] = SecretAlphabet[(int)(n % 62)];
            n /= 62;
        }
    }

    public override string ToString() => string.Concat(KeyPrefix, Id, "_…");
}
