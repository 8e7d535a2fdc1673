using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;
using static FuncProxy.Tests.Admin.AdminTestKit;
using static Microsoft.Playwright.Assertions;

namespace FuncProxy.Tests.OperatorConsole;

/// <summary>
/// The operator console end to end in headless Chromium against the Kestrel host on real Azurite: every page is watched
/// for CSP violations, uncaught errors, console errors and JavaScript dialogs (<see cref="WatchedPage.AssertCleanAsync"/>).
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class ConsoleBrowserTests : IClassFixture<ConsoleFixture>
{
    private const string Markup = "<img src=x onerror=alert(1)>";
    private readonly ConsoleFixture _fixture;

    public ConsoleBrowserTests(ConsoleFixture fixture) => _fixture = fixture;

    private async Task<WatchedPage> SignedInAsync(int width = 1280, int height = 800)
    {
        var watched = await _fixture.Browser.OpenAsync(width, height);
        var page = watched.Page;
        await page.GotoAsync(_fixture.ConsoleUrl.ToString());
        await page.GetByLabel("Value").FillAsync(_fixture.AdminKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Keys", Level = 1 })).ToBeVisibleAsync();
        return watched;
    }

    /// <summary>Writes docs/console/*.png when FUNCPROXY_CONSOLE_SCREENSHOTS names a folder (see docs/console.md).</summary>
    private static async Task ScreenshotAsync(IPage page, string name, bool fullPage = false)
    {
        if (ConsoleFixture.ScreenshotFolder is { } folder)
        {
            Directory.CreateDirectory(folder);
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(folder, name + ".png"), FullPage = fullPage });
        }
    }

    private async Task<int> ChatAsync(string key)
    {
        using var response = await _fixture.Gateway.SendAsync(HttpMethod.Post, "/api/stub/chat/completions", key,
            new StringContent("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"));
        return (int)response.StatusCode;
    }

    /// <summary>Clicks a key action and confirms it in the console's own (HTML) dialog.</summary>
    private static async Task ConfirmAsync(IPage page, string action)
    {
        await page.GetByRole(AriaRole.Group, new() { Name = "Key actions" }).GetByRole(AriaRole.Button, new() { Name = action, Exact = true }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog);
        await Expect(dialog).ToBeVisibleAsync();
        await dialog.GetByRole(AriaRole.Button, new() { Name = action, Exact = true }).ClickAsync();
        await Expect(dialog).ToHaveCountAsync(0);
    }

    [BrowserFact]
    public async Task An_operator_signs_in_creates_a_key_sees_its_usage_rotates_disables_revokes_and_finds_each_action_in_the_audit_view()
    {
        await using var watched = await SignedInAsync();
        var page = watched.Page;
        await ScreenshotAsync(page, "keys");

        // The credential is kept for this tab only: sessionStorage, never localStorage, never the URL.
        Assert.Contains(_fixture.AdminKey, await page.EvaluateAsync<string>("() => sessionStorage.getItem('funcproxy.console.credential')"), StringComparison.Ordinal);
        Assert.Equal(0, await page.EvaluateAsync<int>("() => localStorage.length"));
        Assert.DoesNotContain(_fixture.AdminKey, page.Url, StringComparison.Ordinal);

        // Create: the key is shown once, with a warning and a copy button.
        await page.GetByRole(AriaRole.Link, new() { Name = "Create key" }).First.ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Create key", Level = 1 })).ToBeVisibleAsync();
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("billing-bot");
        await page.GetByLabel("Owner", new() { Exact = true }).FillAsync("team-a");
        await page.GetByLabel("Allowed upstreams").FillAsync("stub");
        await page.GetByLabel("Requests per minute").FillAsync("60");
        await page.GetByRole(AriaRole.Button, new() { Name = "Add metadata entry" }).ClickAsync();
        await page.GetByLabel("Metadata name").FillAsync("ticket");
        await page.GetByLabel("Metadata value").FillAsync("OPS-12");
        await ScreenshotAsync(page, "create");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Store this key now" })).ToBeVisibleAsync();
        await Expect(page.GetByText("This is the only time the key is shown")).ToBeVisibleAsync();
        var key = await page.Locator("#new-key").InputValueAsync();
        Assert.StartsWith("fpk_", key, StringComparison.Ordinal);
        await page.GetByRole(AriaRole.Button, new() { Name = "Copy key" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Store this key now" }).GetByRole(AriaRole.Status)).ToHaveTextAsync("Copied.");
        Assert.Equal(key, await page.EvaluateAsync<string>("() => navigator.clipboard.readText()"));
        await ScreenshotAsync(page, "created");

        // The key works through the gateway.
        Assert.Equal(200, await ChatAsync(key));

        // Its page: record, limits, metadata; the key value itself is nowhere on it.
        await page.GetByRole(AriaRole.Link, new() { Name = "I have stored it: open the key" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "billing-bot", Level = 1 })).ToBeVisibleAsync();
        var id = key.Split('_')[1];
        await Expect(page.Locator("dl.record").First).ToContainTextAsync(id);
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Limits and budgets" })).ToContainTextAsync("60");
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Metadata" })).ToContainTextAsync("OPS-12");
        Assert.DoesNotContain(key, await page.ContentAsync(), StringComparison.Ordinal);

        // The call's usage appears (rows are flushed every second here): one request, the stub's 12 + 5 tokens.
        var requests = page.Locator("figcaption", new() { HasText = "Requests per hour" });
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!(await requests.InnerTextAsync()).Contains("total 1", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
        {
            await page.GetByRole(AriaRole.Button, new() { Name = "Refresh usage" }).ClickAsync();
            await page.WaitForTimeoutAsync(500);
        }
        await Expect(requests).ToContainTextAsync("total 1");
        await Expect(page.Locator("figcaption", new() { HasText = "Tokens per hour" })).ToContainTextAsync("total 17");
        Assert.True(await page.Locator("svg.chart rect.bar:not(.zero)").CountAsync() >= 2);
        await ScreenshotAsync(page, "key", fullPage: true);

        // Edit: a merge patch of what changed.
        await page.GetByRole(AriaRole.Link, new() { Name = "Edit" }).ClickAsync();
        await page.GetByLabel("Requests per minute").FillAsync("120");
        await page.GetByLabel("Owner", new() { Exact = true }).FillAsync("team-b");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await Expect(page.GetByText("Changes saved.")).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Limits and budgets" })).ToContainTextAsync("120");
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Record" })).ToContainTextAsync("team-b");

        // Rotate with an hour of grace: a new key, shown once; old and new both work.
        await page.GetByRole(AriaRole.Group, new() { Name = "Key actions" }).GetByRole(AriaRole.Button, new() { Name = "Rotate" }).ClickAsync();
        var rotate = page.GetByRole(AriaRole.Dialog);
        await rotate.GetByLabel("Grace period").FillAsync("1");
        await rotate.GetByLabel("Unit").SelectOptionAsync("hours");
        await rotate.GetByRole(AriaRole.Button, new() { Name = "Rotate" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Store this key now" })).ToBeVisibleAsync();
        var rotated = await page.Locator("#new-key").InputValueAsync();
        Assert.NotEqual(key, rotated);
        Assert.StartsWith("fpk_" + id + "_", rotated, StringComparison.Ordinal);
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Record" })).ToContainTextAsync("Previous secret works until");
        Assert.Equal(200, await ChatAsync(rotated));
        Assert.Equal(200, await ChatAsync(key));

        // Disable, enable, revoke: each confirmed in a dialog; the gateway follows.
        await ConfirmAsync(page, "Disable");
        await Expect(page.Locator(".view-head .badge")).ToHaveTextAsync("disabled");
        Assert.Equal(401, await ChatAsync(rotated));
        await ConfirmAsync(page, "Enable");
        await Expect(page.Locator(".view-head .badge")).ToHaveTextAsync("active");
        Assert.Equal(200, await ChatAsync(rotated));
        await ConfirmAsync(page, "Revoke");
        await Expect(page.Locator(".view-head .badge")).ToHaveTextAsync("revoked");
        await Expect(page.GetByRole(AriaRole.Group, new() { Name = "Key actions" }).GetByRole(AriaRole.Button)).ToHaveCountAsync(0);
        Assert.Equal(401, await ChatAsync(rotated));

        // The audit view, filtered by the key, lists every action, newest first.
        await page.GetByRole(AriaRole.Link, new() { Name = "Audit log" }).First.ClickAsync();
        await page.GetByLabel("Key id").FillAsync(id);
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        var table = page.GetByRole(AriaRole.Table);
        await Expect(table).ToContainTextAsync("key.revoke");
        var actions = await table.Locator("tbody tr td:nth-child(2)").AllInnerTextsAsync();
        Assert.Equal(["key.revoke", "key.enable", "key.disable", "key.rotate", "key.update", "key.create"], actions);
        Assert.All(await table.Locator("tbody tr td:nth-child(3)").AllInnerTextsAsync(), r => Assert.Equal("success", r));
        await ScreenshotAsync(page, "audit");

        await watched.AssertCleanAsync();
    }

    [BrowserFact]
    public async Task A_wrong_admin_key_is_refused_with_the_APIs_own_detail_and_nothing_is_kept()
    {
        const string wrong = "fpa_aaaaaaaaaaaaaaaa_not-a-real-secret";
        using var direct = new HttpClient { BaseAddress = new Uri(_fixture.Gateway.BaseAddress, "/api/admin/") };
        direct.DefaultRequestHeaders.Add("X-Admin-Key", wrong);
        using var refusal = await direct.GetAsync("keys?limit=1");
        Assert.Equal(HttpStatusCode.Unauthorized, refusal.StatusCode);
        var detail = (await JsonAsync(refusal)).GetProperty("detail").GetString()!;

        await using var watched = await _fixture.Browser.OpenAsync();
        var page = watched.Page;
        await page.GotoAsync(_fixture.ConsoleUrl.ToString());
        await ScreenshotAsync(page, "signin");
        await page.GetByLabel("Value").FillAsync(wrong);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();

        var alert = page.GetByRole(AriaRole.Alert);
        await Expect(alert).ToContainTextAsync(detail);
        await Expect(alert).ToContainTextAsync("admin_unauthorized");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Sign in", Level = 1 })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Navigation, new() { Name = "Main" })).ToBeHiddenAsync();
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('funcproxy.console.credential')"));
        await watched.AssertCleanAsync(401);
    }

    [BrowserFact]
    public async Task A_key_named_with_markup_and_metadata_holding_markup_render_as_text_and_run_nothing()
    {
        using var admin = _fixture.Gateway.AdminClient(_fixture.AdminKey);
        using var created = await admin.PostAsync("keys", JsonBody(JsonSerializer.Serialize(new
        {
            name = Markup,
            owner = "<svg onload=alert(2)>",
            allowedUpstreams = new[] { "stub" },
            metadata = new Dictionary<string, string> { ["note"] = "<script>alert(3)</script>", ["html"] = "<b>bold</b><iframe src=x>" },
        })));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await JsonAsync(created)).GetProperty("record").GetProperty("id").GetString()!;
        using var update = new HttpRequestMessage(HttpMethod.Patch, "keys/" + id) { Content = JsonBody("""{"name":"<img src=x onerror=alert(1)>"}""") };
        using var _ = await admin.SendAsync(update);

        await using var watched = await SignedInAsync();
        var page = watched.Page;
        await page.GetByLabel("Owner").FillAsync("<svg onload=alert(2)>");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        var link = page.GetByRole(AriaRole.Link, new() { Name = Markup });
        await Expect(link).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Cell, new() { Name = "<svg onload=alert(2)>" })).ToBeVisibleAsync();
        await link.ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = Markup, Level = 1 })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Metadata" })).ToContainTextAsync("<script>alert(3)</script>");
        await Expect(page.GetByRole(AriaRole.Region, new() { Name = "Metadata" })).ToContainTextAsync("<b>bold</b><iframe src=x>");
        await page.GetByRole(AriaRole.Link, new() { Name = "Edit" }).ClickAsync();
        await Expect(page.GetByLabel("Name", new() { Exact = true })).ToHaveValueAsync(Markup);

        // None of it became an element.
        Assert.Equal(0, await page.Locator("main img, main svg:not(.chart), main script, main b, main iframe").CountAsync());
        await page.GoBackAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = Markup, Level = 1 })).ToBeVisibleAsync();
        Assert.Equal(0, await page.Locator("main img, main script, main b, main iframe").CountAsync());
        await watched.AssertCleanAsync();
    }

    [BrowserFact]
    public async Task Record_limit_and_usage_fields_the_API_adds_later_are_shown_and_editable_without_console_changes()
    {
        using var admin = _fixture.Gateway.AdminClient(_fixture.AdminKey);
        using var created = await admin.PostAsync("keys", JsonBody("""{"name":"spend","allowedUpstreams":["stub"],"limits":{"requestsPerMinute":7}}"""));
        var body = await JsonAsync(created);
        var id = body.GetProperty("record").GetProperty("id").GetString()!;
        Assert.Equal(200, await ChatAsync(body.GetProperty("key").GetString()!));

        await using var watched = await SignedInAsync();
        var page = watched.Page;
        // This branch's API does not return budgets, model rules or cost yet (issue 10 adds them): the answers are
        // extended in the browser, as that API will send them, to show the console renders whatever it is given.
        var patches = new List<string>();
        await page.RouteAsync(new Regex("/api/admin/keys/" + id + "(/usage)?(\\?.*)?$"), async route =>
        {
            if (route.Request.Method == "PATCH")
            {
                patches.Add(route.Request.PostData ?? "");
                await route.FulfillAsync(new() { Status = 200, ContentType = "application/json", Body = await (await admin.GetAsync("keys/" + id)).Content.ReadAsStringAsync() });
                return;
            }
            var response = await route.FetchAsync();
            var json = JsonNode.Parse(await response.TextAsync())!;
            if (route.Request.Url.Contains("/usage", StringComparison.Ordinal))
            {
                json["hours"] = new JsonArray(new JsonObject
                {
                    ["hour"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:00:00'Z'", System.Globalization.CultureInfo.InvariantCulture),
                    ["upstream"] = "stub", ["model"] = "gpt-4o-mini", ["requests"] = 3, ["inputTokens"] = 30, ["outputTokens"] = 6, ["costUsd"] = 0.25,
                });
            }
            else
            {
                json["limits"]!["budgetPerDayUsd"] = 5.5;
                json["allowedModels"] = new JsonArray("gpt-4o*");
                json["modelAliases"] = new JsonObject { ["fast"] = "gpt-4o-mini" };
            }
            await route.FulfillAsync(new() { Response = response, Body = json.ToJsonString() });
        });

        await page.EvaluateAsync("h => { location.hash = h; }", "#/keys/" + id);
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "spend", Level = 1 })).ToBeVisibleAsync();
        var limits = page.GetByRole(AriaRole.Region, new() { Name = "Limits and budgets" });
        await Expect(limits).ToContainTextAsync("Budget per day (USD)");
        await Expect(limits).ToContainTextAsync("5.5");
        var record = page.GetByRole(AriaRole.Region, new() { Name = "Record" });
        await Expect(record).ToContainTextAsync("Allowed models");
        await Expect(record).ToContainTextAsync("gpt-4o*");
        await Expect(record).ToContainTextAsync("fast");
        await Expect(page.Locator("figcaption", new() { HasText = "Cost per hour" })).ToContainTextAsync("$0.25");
        await Expect(page.Locator("figcaption", new() { HasText = "Requests per hour" })).ToContainTextAsync("total 3");

        // Editing: the new limit has its own field, the new record fields are JSON; only what changed is sent.
        await page.GetByRole(AriaRole.Link, new() { Name = "Edit" }).ClickAsync();
        await Expect(page.GetByLabel("Budget per day (USD)")).ToHaveValueAsync("5.5");
        await page.GetByLabel("Budget per day (USD)").FillAsync("7.25");
        await page.GetByLabel("Allowed models").FillAsync("""["gpt-4o*", "o3*"]""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        await Expect(page.GetByText("Changes saved.")).ToBeVisibleAsync();
        var patch = JsonNode.Parse(Assert.Single(patches))!.AsObject();
        Assert.Equal(["limits", "allowedModels"], patch.Select(p => p.Key));
        Assert.Equal(7.25, patch["limits"]!["budgetPerDayUsd"]!.GetValue<double>());
        Assert.Equal(7, patch["limits"]!["requestsPerMinute"]!.GetValue<long>());
        Assert.Equal("o3*", patch["allowedModels"]![1]!.GetValue<string>());
        await watched.AssertCleanAsync();
    }

    [BrowserFact]
    public async Task The_browser_enforces_the_console_CSP_so_an_injected_inline_script_is_refused_and_reported()
    {
        await using var watched = await SignedInAsync();
        var page = watched.Page;

        // Injected the way an HTML injection would be: an inline script and an inline handler, neither may run.
        await page.EvaluateAsync("""
            () => {
              const script = document.createElement('script');
              script.textContent = 'window.__ran = true;';
              document.body.append(script);
              const img = document.createElement('img');
              img.setAttribute('onerror', 'window.__ran = true;');
              img.src = 'data:,';
              document.body.append(img);
            }
            """);

        await page.WaitForFunctionAsync("() => window.__cspViolations.length >= 1");
        Assert.False(await page.EvaluateAsync<bool>("() => window.__ran === true"));
        Assert.Contains(await watched.CspViolationsAsync(), v => v.StartsWith("script-src", StringComparison.Ordinal));
        await Assert.ThrowsAnyAsync<Exception>(() => watched.AssertCleanAsync());
    }

    [BrowserFact]
    public async Task Axe_finds_no_serious_or_critical_violation_on_any_page_at_laptop_and_phone_widths()
    {
        using var admin = _fixture.Gateway.AdminClient(_fixture.AdminKey);
        using var created = await admin.PostAsync("keys", JsonBody("""{"name":"axe","owner":"a11y","allowedUpstreams":["stub"],"limits":{"requestsPerMinute":5},"metadata":{"team":"x"}}"""));
        var id = (await JsonAsync(created)).GetProperty("record").GetProperty("id").GetString()!;
        var findings = new List<string>();
        foreach (var (width, height) in new[] { (1280, 800), (390, 844) })
        {
            await using (var signedOut = await _fixture.Browser.OpenAsync(width, height))
            {
                await signedOut.Page.GotoAsync(_fixture.ConsoleUrl.ToString());
                await Expect(signedOut.Page.GetByRole(AriaRole.Heading, new() { Name = "Sign in" })).ToBeVisibleAsync();
                findings.AddRange(await SeriousAsync(signedOut.Page, $"sign-in @{width}"));
            }
            await using var watched = await SignedInAsync(width, height);
            var page = watched.Page;
            foreach (var (hash, heading) in new[] { ("#/keys", "Keys"), ($"#/keys/{id}", "axe"), ($"#/keys/{id}/edit", "Edit axe"), ("#/create", "Create key"), ("#/audit", "Audit log") })
            {
                await page.EvaluateAsync("h => { location.hash = h; }", hash);
                await Expect(page.GetByRole(AriaRole.Heading, new() { Name = heading, Level = 1, Exact = true })).ToBeVisibleAsync();
                findings.AddRange(await SeriousAsync(page, $"{hash} @{width}"));
            }
            if (width < 500)
            {
                await page.EvaluateAsync("h => { location.hash = h; }", $"#/keys/{id}");
                await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "axe", Level = 1 })).ToBeVisibleAsync();
                await ScreenshotAsync(page, "key-phone");
            }
            await watched.AssertCleanAsync();
        }
        Assert.True(findings.Count == 0, string.Join("\n", findings));
    }

    private static async Task<IEnumerable<string>> SeriousAsync(IPage page, string where)
    {
        var result = await page.RunAxe();
        return result.Violations
            .Where(v => v.Impact is "serious" or "critical")
            .Select(v => $"{where}: {v.Impact} {v.Id}: {v.Help} at {string.Join(", ", v.Nodes.Select(n => n.Target?.ToString()))}");
    }
}
