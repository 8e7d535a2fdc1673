using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Azure.Core;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// Key Vault cannot run here (no emulator exists), so the real <c>SecretClient</c> talks to this handler, which answers as
/// Key Vault's REST API does: a bearer challenge to an unauthenticated request, then GET /secrets/{name}/?api-version=...
/// with the secret bundle JSON, or 404 SecretNotFound. Entra ID cannot run here either: <see cref="Credential"/> hands out
/// a fixed token.
/// </summary>
public sealed class FakeKeyVault : HttpMessageHandler
{
    public static readonly Uri VaultUri = new("https://funcproxy-test.vault.azure.net/");

    private readonly ConcurrentDictionary<string, string> _secrets = new(StringComparer.OrdinalIgnoreCase);
    private int _reads;

    /// <summary>Authenticated secret reads served (challenges not counted).</summary>
    public int Reads => Volatile.Read(ref _reads);

    /// <summary>When set, every request fails as if the vault were unreachable.</summary>
    public bool Down { get; set; }

    public void Set(string name, string value) => _secrets[name] = value;

    public static TokenCredential Credential { get; } = new FixedTokenCredential();

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (Down)
        {
            throw new HttpRequestException("Connection refused (fake vault is down).");
        }
        if (request.Headers.Authorization is null)
        {
            var challenge = new HttpResponseMessage(HttpStatusCode.Unauthorized) { Content = new StringContent("") };
            challenge.Headers.TryAddWithoutValidation("WWW-Authenticate",
                "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"");
            return Task.FromResult(challenge);
        }
        var segments = request.RequestUri!.AbsolutePath.Trim('/').Split('/');
        if (request.Method != HttpMethod.Get || segments.Length < 2 || segments[0] != "secrets")
        {
            return Task.FromResult(Json(HttpStatusCode.BadRequest, new { error = new { code = "BadParameter", message = "Unsupported by the fake vault." } }));
        }
        var name = segments[1];
        if (!_secrets.TryGetValue(name, out var value))
        {
            return Task.FromResult(Json(HttpStatusCode.NotFound, new { error = new { code = "SecretNotFound", message = $"A secret with (name/id) {name} was not found in this key vault." } }));
        }
        Interlocked.Increment(ref _reads);
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return Task.FromResult(Json(HttpStatusCode.OK, new
        {
            value,
            id = $"{VaultUri}secrets/{name}/0123456789abcdef0123456789abcdef",
            attributes = new { enabled = true, created = now, updated = now, recoveryLevel = "Recoverable+Purgeable", recoverableDays = 90 },
            tags = new { },
        }));
    }

    private static HttpResponseMessage Json(HttpStatusCode status, object body) =>
        new(status) { Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json") };

    private sealed class FixedTokenCredential : TokenCredential
    {
        private static AccessToken Token => new("fake-entra-token", DateTimeOffset.UtcNow.AddHours(1));
        public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken) => Token;
        public override ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken) => ValueTask.FromResult(Token);
    }
}
