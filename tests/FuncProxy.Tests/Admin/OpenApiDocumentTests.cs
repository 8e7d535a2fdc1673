using System.Net;
using System.Text.Json;
using FuncProxy.Admin;
using FuncProxy.Tests.Infrastructure;
using Microsoft.OpenApi;
using Microsoft.OpenApi.Reader;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>The served OpenAPI document is valid OpenAPI 3.x, and every operation in it is a route the gateway serves.</summary>
public sealed class OpenApiDocumentTests : IAsyncLifetime
{
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _gateway = await GatewayHost.StartAsync(Settings(_stub));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    [Fact]
    public async Task The_document_is_valid_OpenAPI_3_and_served_without_a_credential()
    {
        using var response = await _gateway.Client.GetAsync("/api/admin/openapi.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var stream = await response.Content.ReadAsStreamAsync();

        var result = await OpenApiDocument.LoadAsync(stream, "json");

        Assert.Empty(result.Diagnostic?.Errors ?? []);
        Assert.StartsWith("3.", result.Diagnostic!.SpecificationVersion.ToString().Replace("OpenApi", "", StringComparison.Ordinal).Replace('_', '.'), StringComparison.Ordinal);
        var errors = result.Document!.Validate(ValidationRuleSet.GetDefaultRuleSet())?.ToList() ?? [];
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => e.ToString())));
    }

    [Fact]
    public async Task The_update_schema_describes_a_merge_patch_whose_limit_and_metadata_members_may_be_null()
    {
        var document = JsonDocument.Parse(await _gateway.Client.GetStringAsync("/api/admin/openapi.json")).RootElement;
        var schemas = document.GetProperty("components").GetProperty("schemas");
        JsonElement Resolve(JsonElement schema) => schema.TryGetProperty("$ref", out var r) ? schemas.GetProperty(r.GetString()!.Split('/')[^1]) : schema;
        var update = schemas.GetProperty("KeyUpdate").GetProperty("properties");
        var patch = document.GetProperty("paths").GetProperty("/keys/{id}").GetProperty("patch");

        Assert.True(patch.GetProperty("requestBody").GetProperty("content").TryGetProperty("application/merge-patch+json", out _));
        var limits = Resolve(update.GetProperty("limits"));
        Assert.Equal("object", limits.GetProperty("type").GetString());
        Assert.True(limits.GetProperty("nullable").GetBoolean());
        Assert.All(limits.GetProperty("properties").EnumerateObject(), p => Assert.True(p.Value.GetProperty("nullable").GetBoolean(), p.Name));
        var metadata = Resolve(update.GetProperty("metadata"));
        Assert.Equal("object", metadata.GetProperty("type").GetString());
        Assert.True(metadata.GetProperty("nullable").GetBoolean());
        Assert.Equal("string", metadata.GetProperty("additionalProperties").GetProperty("type").GetString());
        Assert.True(metadata.GetProperty("additionalProperties").GetProperty("nullable").GetBoolean());
        Assert.Equal(KeyRequests.LimitNames.Order(StringComparer.Ordinal), limits.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Every_operation_in_the_document_is_served()
    {
        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        using var created = await admin.PostAsync("keys", JsonBody("""{"name":"doc","allowedUpstreams":["echo"]}"""));
        var id = (await JsonAsync(created)).GetProperty("record").GetProperty("id").GetString()!;
        var document = JsonDocument.Parse(await _gateway.Client.GetStringAsync("/api/admin/openapi.json")).RootElement;
        var checkedOperations = 0;
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject().Where(o => o.Name is "get" or "post" or "patch" or "put" or "delete"))
            {
                var url = path.Name.TrimStart('/').Replace("{id}", id, StringComparison.Ordinal);
                using var request = new HttpRequestMessage(new HttpMethod(operation.Name.ToUpperInvariant()), url);
                if (operation.Name is "post" or "patch" && operation.Value.TryGetProperty("requestBody", out _))
                {
                    request.Content = JsonBody(path.Name == "/keys" ? """{"name":"x","allowedUpstreams":["echo"]}""" : path.Name.EndsWith("rotate", StringComparison.Ordinal) ? "{}" : """{"name":"y"}""");
                }
                using var response = await admin.SendAsync(request);
                var code = response.Content.Headers.ContentType?.MediaType == "application/problem+json"
                    ? (await JsonAsync(response)).GetProperty("code").GetString()
                    : null;
                Assert.True(response.StatusCode != HttpStatusCode.MethodNotAllowed && code != "not_found",
                    $"{operation.Name.ToUpperInvariant()} {path.Name}: {(int)response.StatusCode} {code}");
                var documented = operation.Value.GetProperty("responses").EnumerateObject().Select(r => r.Name).ToList();
                Assert.Contains(((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture), documented);
                checkedOperations++;
            }
        }
        Assert.Equal(16, checkedOperations);
    }
}
