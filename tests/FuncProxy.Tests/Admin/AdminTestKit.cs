using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Azure.Data.Tables;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Admin;

/// <summary>Small helpers the management API tests share.</summary>
internal static class AdminTestKit
{
    public static Dictionary<string, string?> Settings(UpstreamStub stub, params (string Key, string? Value)[] extra)
    {
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:stub:BaseUrl"] = new Uri(stub.BaseAddress, "/v1").ToString(),
            ["FuncProxy:Upstreams:echo:BaseUrl"] = new Uri(stub.BaseAddress, "/echo/base").ToString(),
        };
        foreach (var (key, value) in extra)
        {
            settings[key] = value;
        }
        return settings;
    }

    public static StringContent JsonBody(string json) => new(json, Encoding.UTF8, "application/json");

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        await response.Content.ReadFromJsonAsync<JsonElement>();

    /// <summary>The field names in a 400 problem's <c>errors</c> extension.</summary>
    public static async Task<string[]> ErrorFieldsAsync(HttpResponseMessage response)
    {
        var body = await JsonAsync(response);
        return body.GetProperty("errors").EnumerateArray().Select(e => e.GetProperty("field").GetString()!).ToArray();
    }

    /// <summary>Calls the stub upstream through the gateway with a client key; returns the status.</summary>
    public static async Task<int> CallWithKeyAsync(HttpClient client, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await client.SendAsync(request);
        return (int)response.StatusCode;
    }

    /// <summary>Every entity of a table under the gateway's prefix, serialized, to search for leaked secrets.</summary>
    public static async Task<List<string>> DumpTableAsync(GatewayHost gateway, string table)
    {
        var tables = gateway.Services.GetRequiredService<FuncProxyTables>();
        var client = tables.Service.GetTableClient(tables.TableName(table));
        var rows = new List<string>();
        await foreach (var e in client.QueryAsync<TableEntity>())
        {
            rows.Add(string.Join(";", e.Select(p => p.Key + "=" + (p.Value is byte[] b ? Convert.ToBase64String(b) : p.Value?.ToString()))));
        }
        return rows;
    }
}
