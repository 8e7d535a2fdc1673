using System.Net.Http.Headers;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Proxying;

public sealed class AuthenticationTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayHost Gateway => fixture.Gateway;

    private async Task<HttpResponseMessage> CallAsync(string path, Action<HttpRequestHeaders>? headers = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        headers?.Invoke(request.Headers);
        return await Gateway.Client.SendAsync(request);
    }

    private static string WithoutRequestId(JsonElement problem)
    {
        var copy = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(problem.GetRawText())!;
        copy.Remove("requestId");
        return JsonSerializer.Serialize(copy);
    }

    [Fact]
    public async Task Every_kind_of_bad_key_gets_the_same_401_body_bar_the_request_id()
    {
        var store = Gateway.Services.GetRequiredService<KeyStore>();
        var lifecycle = Gateway.Services.GetRequiredService<KeyLifecycle>();
        var good = await Gateway.MintKeyAsync("echo");
        var revoked = await Gateway.MintKeyAsync("echo");
        await lifecycle.RevokeAsync(revoked.Record.Id);
        var expired = await lifecycle.CreateAsync(new KeyCreation { Name = "old", AllowedUpstreams = ["echo"], ExpiresAt = DateTimeOffset.UtcNow.AddSeconds(-1) });
        var disabled = await Gateway.MintKeyAsync("echo");
        await lifecycle.ChangeAsync(disabled.Record.Id, r => r with { Status = KeyStatus.Disabled });
        var unknownId = ApiKey.Generate().Value; // well-formed, valid checksum, never stored
        var wrongSecret = ApiKey.GenerateFor(good.Record.Id).Value; // right id, other secret
        var badChecksum = good.Value[..^1] + (good.Value[^1] == 'A' ? 'B' : 'A');

        var presented = new Dictionary<string, Action<HttpRequestHeaders>>
        {
            ["missing"] = _ => { },
            ["malformed"] = h => h.Authorization = new AuthenticationHeaderValue("Bearer", "not-a-key"),
            ["wrong checksum"] = h => h.Authorization = new AuthenticationHeaderValue("Bearer", badChecksum),
            ["unknown id"] = h => h.Authorization = new AuthenticationHeaderValue("Bearer", unknownId),
            ["wrong secret"] = h => h.Add("x-api-key", wrongSecret),
            ["revoked"] = h => h.Add("api-key", revoked.Value),
            ["expired"] = h => h.Authorization = new AuthenticationHeaderValue("Bearer", expired.Value),
            ["disabled"] = h => h.Authorization = new AuthenticationHeaderValue("Bearer", disabled.Value),
        };

        var bodies = new HashSet<string>();
        foreach (var (name, set) in presented)
        {
            using var response = await CallAsync("/api/echo/anything", set);
            var problem = await Problems.AssertProblemAsync(response, 401, "invalid_api_key");
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            bodies.Add(WithoutRequestId(problem));
        }
        Assert.Single(bodies);
        Assert.DoesNotContain(fixture.Stub.Requests, r => r.Path.Contains("anything", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Malformed_and_forged_keys_are_refused_without_a_storage_round_trip()
    {
        var cache = Gateway.Services.GetRequiredService<KeyRecordCache>();
        var good = await Gateway.MintKeyAsync("echo");
        var forged = good.Value[..^3] + "zzz";
        var before = cache.StorageReads;

        foreach (var value in new[] { "garbage", "fpk_short_key", forged, good.Value.ToUpperInvariant(), good.Value + "x" })
        {
            using var response = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", value));
            Assert.Equal(401, (int)response.StatusCode);
        }

        Assert.Equal(before, cache.StorageReads);
    }

    [Fact]
    public async Task A_checksum_verified_once_is_not_hashed_again_and_lets_no_other_checksum_or_secret_in()
    {
        // Issue 11: a key's checksum was hashed on every call. Now an instance remembers the last checksum it verified for
        // an id whose secret matched, and skips that hash for the same checksum; every other checksum is hashed as before.
        var cache = Gateway.Services.GetRequiredService<KeyRecordCache>();
        var good = await Gateway.MintKeyAsync("echo");
        var id = good.Record.Id;
        var checksum = good.Value[^ApiKey.ChecksumLength..];
        var otherSecret = ApiKey.GenerateFor(id).Value; // right id, valid checksum of its own, wrong secret
        var badChecksum = good.Value[..^1] + (good.Value[^1] == 'A' ? 'B' : 'A');
        var readsBefore = cache.StorageReads;

        using (var refused = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", otherSecret)))
        {
            Assert.Equal(401, (int)refused.StatusCode);
        }
        Assert.False(cache.IsVerifiedChecksum(id, otherSecret.AsSpan(otherSecret.Length - ApiKey.ChecksumLength)), "a checksum is remembered only once the secret matched");
        Assert.False(cache.IsVerifiedChecksum(id, checksum));

        using (var accepted = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", good.Value)))
        {
            Assert.Equal(200, (int)accepted.StatusCode);
        }
        Assert.True(cache.IsVerifiedChecksum(id, checksum));

        // The remembered checksum vouches for no other: a forged one is still refused with no storage round trip, and the
        // same checksum with another secret is still refused by the secret's hash.
        var readsAfterGood = cache.StorageReads;
        using (var forged = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", badChecksum)))
        {
            Assert.Equal(401, (int)forged.StatusCode);
        }
        Assert.Equal(readsAfterGood, cache.StorageReads);
        var sameChecksumOtherSecret = string.Concat(good.Value.AsSpan(0, 4 + ApiKey.IdLength + 1),
            otherSecret.AsSpan(4 + ApiKey.IdLength + 1, ApiKey.SecretLength), checksum);
        using (var mixed = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", sameChecksumOtherSecret)))
        {
            Assert.Equal(401, (int)mixed.StatusCode);
        }
        using (var again = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", good.Value)))
        {
            Assert.Equal(200, (int)again.StatusCode);
        }
        Assert.True(cache.StorageReads - readsBefore <= 1, "one read for the id, then the cache");
    }

    [Fact]
    public async Task The_key_is_accepted_in_each_header_the_SDKs_use()
    {
        var key = await Gateway.MintKeyAsync("echo");
        foreach (var set in new Action<HttpRequestHeaders>[]
        {
            h => h.Authorization = new AuthenticationHeaderValue("Bearer", key.Value),
            h => h.Add("x-api-key", key.Value),
            h => h.Add("api-key", key.Value),
        })
        {
            using var response = await CallAsync("/api/echo/ok", set);
            Assert.Equal(200, (int)response.StatusCode);
        }
    }

    [Fact]
    public async Task A_key_used_on_an_upstream_it_may_not_call_gets_403()
    {
        var key = await Gateway.MintKeyAsync("stub");
        using var response = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", key.Value));
        await Problems.AssertProblemAsync(response, 403, "upstream_not_allowed");
    }

    [Fact]
    public async Task A_wildcard_key_may_call_any_upstream()
    {
        var key = await Gateway.MintKeyAsync(KeyRecord.AnyUpstream);
        using var response = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", key.Value));
        Assert.Equal(200, (int)response.StatusCode);
    }

    [Fact]
    public async Task An_unknown_upstream_gets_404()
    {
        var key = await Gateway.MintKeyAsync("echo");
        using var response = await CallAsync("/api/nowhere/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", key.Value));
        await Problems.AssertProblemAsync(response, 404, "unknown_upstream");
    }

    [Fact]
    public async Task A_rotated_secret_in_its_grace_period_is_accepted_and_refused_after()
    {
        var lifecycle = Gateway.Services.GetRequiredService<KeyLifecycle>();
        var original = await Gateway.MintKeyAsync("echo");
        var next = ApiKey.GenerateFor(original.Record.Id);
        var graceEnds = DateTimeOffset.UtcNow.AddSeconds(5);
        await lifecycle.ChangeAsync(original.Record.Id, r => r with
        {
            SecretHash = KeyHasher.Hash(next.Id, next.Secret),
            PreviousSecretHash = r.SecretHash,
            PreviousSecretExpiresAt = graceEnds,
        });

        using (var old = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", original.Value)))
        using (var fresh = await CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", next.Value)))
        {
            Assert.Equal(200, (int)old.StatusCode);
            Assert.Equal(200, (int)fresh.StatusCode);
        }
        // Waited for as a condition: a fixed sleep is either too long or, on a busy machine, too short.
        using var late = await Eventually.PollAsync(
            () => CallAsync("/api/echo/x", h => h.Authorization = new AuthenticationHeaderValue("Bearer", original.Value)),
            r => (int)r.StatusCode == 401);
        Assert.Equal(401, (int)late.StatusCode);
    }
}
