using System.Net;
using Azure.Core;
using FuncProxy.Backends;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static FuncProxy.Tests.Backends.PoolKit;

namespace FuncProxy.Tests.Backends;

/// <summary>
/// Backends reached with an Entra ID token from the app's managed identity. Entra ID cannot run here, so the credential is
/// a <see cref="TokenCredential"/> test double that counts how often it is asked; everything else (gateway, stub
/// backend, storage) is real.
/// </summary>
public sealed class ManagedIdentityTests
{
    [Fact]
    public async Task The_token_credential_is_asked_once_per_token_lifetime_and_refreshed_before_expiry_by_one_caller()
    {
        var credential = new CountingCredential();
        await using var backend = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("aoai", V1(backend)),
            new()
            {
                [$"FuncProxy:Upstreams:{Upstream}:Backends:aoai:Auth"] = "ManagedIdentity",
                [$"FuncProxy:Upstreams:{Upstream}:Backends:aoai:TokenScope"] = "https://cognitiveservices.azure.com/.default",
            }),
            services: s => s.AddSingleton<BackendCredentialFactory>(_ => _ => credential));
        var key = await gateway.MintKeyAsync(Upstream);

        async Task CallManyAsync(int calls) => await Parallel.ForAsync(0, calls, new ParallelOptions { MaxDegreeOfParallelism = 10 }, async (_, _) =>
        {
            using var response = await gateway.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        });

        await CallManyAsync(30);
        Assert.Equal(1, credential.Calls);
        Assert.All(backend.Requests, r => Assert.Equal("Bearer token-1", r.Headers["Authorization"]));
        Assert.Equal(["https://cognitiveservices.azure.com/.default"], credential.LastScopes);

        // token-1 asks to be refreshed 2 s after issue (it stays valid for an hour): calls keep flowing, one of them
        // starts the refresh in the background, and the credential is asked once more, not once per call.
        Assert.True(await EventuallyAsync(async () =>
        {
            await CallManyAsync(10);
            return backend.Requests.Any(r => r.Headers["Authorization"] == "Bearer token-2");
        }), "the token was never refreshed");
        await CallManyAsync(30);
        Assert.Equal(2, credential.Calls);
        Assert.Equal(2, gateway.Services.GetRequiredService<BackendTokens>().CredentialCalls);
        Assert.DoesNotContain(gateway.Logs.Lines, l => l.Contains("token-1", StringComparison.Ordinal) || l.Contains("token-2", StringComparison.Ordinal));
    }

    /// <summary>Issues token-1, token-2, ... valid for an hour; the first asks to be refreshed after 2 s.</summary>
    private sealed class CountingCredential : TokenCredential
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public string[] LastScopes { get; private set; } = [];

        public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken) =>
            GetTokenAsync(requestContext, cancellationToken).AsTask().GetAwaiter().GetResult();

        public override async ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken)
        {
            var n = Interlocked.Increment(ref _calls);
            LastScopes = requestContext.Scopes;
            await Task.Delay(100, cancellationToken); // as a real token endpoint, not instant: concurrent callers must share this one
            var now = DateTimeOffset.UtcNow;
            return new AccessToken($"token-{n}", now.AddHours(1), refreshOn: n == 1 ? now.AddSeconds(2) : now.AddMinutes(55));
        }
    }
}
