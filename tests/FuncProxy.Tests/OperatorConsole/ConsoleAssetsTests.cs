using System.Net;
using System.Net.Http.Headers;
using FuncProxy.Admin.OperatorConsole;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.OperatorConsole;

/// <summary>The console's files over real HTTP from the Server host: types, security headers, caching, no escape.</summary>
public sealed class ConsoleAssetsTests : IAsyncLifetime
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

    [Theory]
    [InlineData("", "text/html")]
    [InlineData("app.js", "text/javascript")]
    [InlineData("api.js", "text/javascript")]
    [InlineData("console.css", "text/css")]
    [InlineData("icon.svg", "image/svg+xml")]
    public async Task Each_file_is_served_without_a_credential_with_its_type_a_strict_CSP_and_no_sniffing(string file, string type)
    {
        using var response = await _gateway.Client.GetAsync("/api/admin/console/" + file);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(type, response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(ConsoleAssets.ContentSecurityPolicy, Header(response, "Content-Security-Policy"));
        Assert.Contains("frame-ancestors 'none'", Header(response, "Content-Security-Policy"), StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe", Header(response, "Content-Security-Policy"), StringComparison.Ordinal);
        Assert.Equal("nosniff", Header(response, "X-Content-Type-Options"));
        Assert.Equal("no-referrer", Header(response, "Referrer-Policy"));
        Assert.Equal("DENY", Header(response, "X-Frame-Options"));
        Assert.NotNull(response.Headers.ETag);
    }

    [Fact]
    public async Task The_page_loads_only_files_of_its_own_with_no_inline_script_or_style()
    {
        var html = await _gateway.Client.GetStringAsync("/api/admin/console/");

        Assert.DoesNotContain("<script>", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("style=", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<style", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("//", html.Replace("http://www.w3.org", "", StringComparison.Ordinal), StringComparison.Ordinal);
        foreach (var name in ConsoleAssets.Instance.Names.Where(n => n.EndsWith(".js", StringComparison.Ordinal)))
        {
            var script = await _gateway.Client.GetStringAsync("/api/admin/console/" + name);
            Assert.DoesNotContain("innerHTML", script, StringComparison.Ordinal);
            Assert.DoesNotContain("insertAdjacentHTML", script, StringComparison.Ordinal);
            Assert.DoesNotContain("eval(", script, StringComparison.Ordinal);
            Assert.DoesNotContain("new Function", script, StringComparison.Ordinal);
            Assert.DoesNotContain("localStorage", script, StringComparison.Ordinal);
            Assert.DoesNotContain("https://", script, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_file_the_browser_already_has_is_answered_304_by_its_ETag_and_revalidated_each_time()
    {
        using var first = await _gateway.Client.GetAsync("/api/admin/console/app.js");
        var etag = first.Headers.ETag!;
        Assert.Contains("no-cache", first.Headers.CacheControl!.ToString(), StringComparison.Ordinal);

        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/admin/console/app.js");
        request.Headers.IfNoneMatch.Add(etag);
        using var second = await _gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.NotModified, second.StatusCode);
        Assert.Empty(await second.Content.ReadAsByteArrayAsync());
        Assert.Equal(etag, second.Headers.ETag);
    }

    [Fact]
    public async Task The_console_path_without_its_slash_redirects_so_relative_links_resolve_under_it()
    {
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, CheckCertificateRevocationList = true }) { BaseAddress = _gateway.BaseAddress };

        using var response = await client.GetAsync("/api/admin/console");

        Assert.Equal(HttpStatusCode.PermanentRedirect, response.StatusCode);
        Assert.Equal("/api/admin/console/", new Uri(new Uri(_gateway.BaseAddress, "/api/admin/console"), response.Headers.Location!).AbsolutePath);
    }

    [Theory]
    [InlineData("/api/admin/console/nope.js")]
    [InlineData("/api/admin/console/..%2Fopenapi.json")]
    [InlineData("/api/admin/console/sub/app.js")]
    [InlineData("/api/admin/console/%2E%2E/%2E%2E/appsettings.json")]
    public async Task Anything_but_a_console_file_is_a_problem_404(string path)
    {
        using var response = await _gateway.Client.GetAsync(path);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task Files_accept_only_GET_and_HEAD()
    {
        using var post = await _gateway.Client.PostAsync("/api/admin/console/app.js", new StringContent("x"));
        using var head = await _gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/api/admin/console/app.js"));

        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.True(head.Content.Headers.ContentLength > 0);
    }

    [Fact]
    public async Task Management_data_stays_uncached_while_the_console_files_are_revalidated()
    {
        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        using var data = await admin.GetAsync("keys");

        Assert.Equal(HttpStatusCode.OK, data.StatusCode);
        Assert.True(data.Headers.CacheControl!.NoStore);
    }

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";
}
