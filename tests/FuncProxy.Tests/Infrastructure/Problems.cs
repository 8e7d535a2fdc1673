using System.Net.Http.Json;
using System.Text.Json;

namespace FuncProxy.Tests.Infrastructure;

public static class Problems
{
    /// <summary>Asserts an RFC 9457 problem response with a request id, and returns its body.</summary>
    public static async Task<JsonElement> AssertProblemAsync(HttpResponseMessage response, int status, string code)
    {
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(status, body.GetProperty("status").GetInt32());
        Assert.Equal(code, body.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(body.GetProperty("requestId").GetString()));
        Assert.Equal(body.GetProperty("requestId").GetString(), response.Headers.GetValues("x-request-id").Single());
        Assert.False(body.TryGetProperty("stackTrace", out _));
        return body;
    }
}
