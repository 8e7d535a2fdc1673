using System.Security.Cryptography;
using System.Text;

namespace FuncProxy.Keys;

/// <summary>
/// Hashes key secrets for storage and checks presented ones in constant time.
/// SHA-256 with a domain-separation prefix and the key id: the secret carries 256 bits from a CSPRNG,
/// so a slow password hash would add latency on every request without adding safety (see SECURITY.md).
/// </summary>
public static class KeyHasher
{
    private const string Domain = "funcproxy-key-v1";

    /// <summary>Admin keys hash under their own domain, so a client key's hash can never vouch for an admin key.</summary>
    internal const string AdminDomain = "funcproxy-admin-key-v1";

    public static byte[] Hash(string id, string secret) => Hash(id, secret, Domain);

    internal static byte[] Hash(string id, string secret, string domain)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(secret);
        return SHA256.HashData(Encoding.UTF8.GetBytes(string.Concat(domain, "\n", id, "\n", secret)));
    }

    public static bool Matches(string id, ReadOnlySpan<char> secret, ReadOnlySpan<byte> storedHash) => Matches(id, secret, storedHash, Domain);

    internal static bool Matches(string id, ReadOnlySpan<char> secret, ReadOnlySpan<byte> storedHash, string domain)
    {
        Span<byte> presented = stackalloc byte[SHA256.HashSizeInBytes];
        // The same bytes Hash() hashes, encoded on the stack (every call checks a key; keys are short): no string, no array.
        var length = Encoding.UTF8.GetMaxByteCount(domain.Length + id.Length + secret.Length + 2);
        var rented = length > 512 ? System.Buffers.ArrayPool<byte>.Shared.Rent(length) : null;
        Span<byte> input = rented is null ? stackalloc byte[512] : rented;
        try
        {
            var written = Encoding.UTF8.GetBytes(domain, input);
            input[written++] = (byte)'\n';
            written += Encoding.UTF8.GetBytes(id, input[written..]);
            input[written++] = (byte)'\n';
            written += Encoding.UTF8.GetBytes(secret, input[written..]);
            SHA256.HashData(input[..written], presented);
        }
        finally
        {
            if (rented is not null)
            {
                CryptographicOperations.ZeroMemory(rented);
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }
            else
            {
                CryptographicOperations.ZeroMemory(input);
            }
        }
        return storedHash.Length == presented.Length && CryptographicOperations.FixedTimeEquals(presented, storedHash);
    }
}
