using FuncProxy.Keys;

namespace FuncProxy.Tests.Keys;

public sealed class ApiKeyTests
{
    [Fact]
    public void A_generated_key_parses_back_to_its_id_and_secret()
    {
        var key = ApiKey.Generate();
        Assert.Equal(ApiKey.TotalLength, key.Value.Length);
        Assert.StartsWith("fpk_" + key.Id + "_", key.Value, StringComparison.Ordinal);
        Assert.True(ApiKey.TryParse(key.Value, out var parsed));
        Assert.Equal(key.Id, parsed!.Value.Id);
        Assert.Equal(key.Secret, parsed.Value.Secret);
    }

    [Fact]
    public void Keys_are_unique_and_their_secrets_carry_at_least_192_bits()
    {
        var keys = Enumerable.Range(0, 2000).Select(_ => ApiKey.Generate()).ToList();
        Assert.Equal(keys.Count, keys.Select(k => k.Id).Distinct().Count());
        Assert.Equal(keys.Count, keys.Select(k => k.Secret).Distinct().Count());
        Assert.True(ApiKey.SecretLength * Math.Log2(62) >= 192);
        // Every base62 symbol shows up: the secret alphabet is used in full, not a narrower one.
        Assert.Equal(62, keys.SelectMany(k => k.Secret).Distinct().Count());
    }

    [Fact]
    public void Any_single_character_changed_fails_the_checksum()
    {
        var value = ApiKey.Generate().Value;
        for (var i = 4; i < value.Length; i++)
        {
            if (i == 4 + ApiKey.IdLength)
            {
                continue;
            }
            var chars = value.ToCharArray();
            chars[i] = chars[i] == 'a' ? 'b' : 'a';
            Assert.False(ApiKey.TryParse(new string(chars), out _), $"position {i}");
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("fpk_")]
    [InlineData("sk-abcdef")]
    [InlineData("Bearer fpk_x")]
    public void Malformed_values_do_not_parse(string value) => Assert.False(ApiKey.TryParse(value, out _));

    [Fact]
    public void The_stored_hash_matches_only_the_right_secret_for_the_right_id()
    {
        var key = ApiKey.Generate();
        var other = ApiKey.Generate();
        var hash = KeyHasher.Hash(key.Id, key.Secret);
        Assert.True(KeyHasher.Matches(key.Id, key.Secret, hash));
        Assert.False(KeyHasher.Matches(key.Id, other.Secret, hash));
        Assert.False(KeyHasher.Matches(other.Id, key.Secret, hash));
        Assert.False(KeyHasher.Matches(key.Id, key.Secret, hash.AsSpan(1)));
        Assert.DoesNotContain(key.Secret, Convert.ToBase64String(hash), StringComparison.Ordinal);
    }
}
