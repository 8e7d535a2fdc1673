using System.Text.Json;
using FuncProxy.Admin;
using FuncProxy.Server;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>FuncProxy:Audit:Retention enforced by the sweep (bounded, both views) and the Kestrel host's schedule; the <c>audit export</c> verb.</summary>
public sealed class AuditRetentionTests : IAsyncLifetime
{
    private UpstreamStub _stub = null!;

    public async Task InitializeAsync() => _stub = await UpstreamStub.StartAsync();

    public async Task DisposeAsync() => await _stub.DisposeAsync();

    [Fact]
    public async Task A_sweep_deletes_events_past_the_retention_from_both_views_in_bounded_runs_and_keeps_the_rest()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:Audit:MaxDeletesPerSweep", "100")));
        var keyId = (await gateway.MintKeyAsync("echo")).Record.Id;
        var now = DateTimeOffset.UtcNow;
        // 120 events 401 days old, on one key: 240 rows, more than one transaction (100) per partition.
        var old = WriterAt(gateway, now.AddDays(-401));
        for (var i = 0; i < 120; i++)
        {
            await old.WriteAsync(new AuditContext("cli:test", "local", null), "key.update", keyId, "success");
        }
        var kept = await WriterAt(gateway, now.AddDays(-399)).WriteAsync(new AuditContext("cli:test", "local", null), "key.disable", keyId, "success");
        var retention = gateway.Services.GetRequiredService<AuditRetention>();

        Assert.Equal(100, await retention.SweepAsync());
        Assert.Equal(100, await retention.SweepAsync());
        Assert.Equal(40, await retention.SweepAsync());
        Assert.Equal(0, await retention.SweepAsync());

        var audit = gateway.Services.GetRequiredService<AuditLog>();
        var byKey = (await audit.QueryAsync(keyId, now.AddDays(-500), now, 1000, null)).Entries;
        Assert.Equal([kept.Id], byKey.Where(e => e.Action != "key.create").Select(e => e.Id));
        var oldDay = (await audit.QueryAsync(null, now.AddDays(-402), now.AddDays(-400), 1000, null)).Entries;
        Assert.Empty(oldDay);
        var keptDay = (await audit.QueryAsync(null, now.AddDays(-399.5), now.AddDays(-398), 1000, null)).Entries;
        Assert.Contains(keptDay, e => e.Id == kept.Id);
    }

    [Fact]
    public async Task The_Kestrel_host_sweeps_on_its_own_schedule()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub,
            ("FuncProxy:Audit:Retention", "30.00:00:00"), ("FuncProxy:Audit:SweepInterval", "00:00:01")));
        var keyId = (await gateway.MintKeyAsync("echo")).Record.Id;
        var now = DateTimeOffset.UtcNow;
        var stale = await WriterAt(gateway, now.AddDays(-31)).WriteAsync(new AuditContext("cli:test", "local", null), "key.update", keyId, "success");
        var recent = await WriterAt(gateway, now.AddDays(-29)).WriteAsync(new AuditContext("cli:test", "local", null), "key.update", keyId, "success");
        var audit = gateway.Services.GetRequiredService<AuditLog>();
        Assert.Contains((await audit.QueryAsync(keyId, now.AddDays(-40), now, 100, null)).Entries, e => e.Id == stale.Id);

        // Generous: on a loaded machine the hosted service's first sweep and each storage call can take seconds.
        var deadline = DateTime.UtcNow.Add(Eventually.DefaultBound * 2);
        while ((await audit.QueryAsync(keyId, now.AddDays(-40), now, 100, null)).Entries.Any(e => e.Id == stale.Id))
        {
            Assert.True(DateTime.UtcNow < deadline, "The hosted sweep did not delete the stale event within 120 s.");
            await Task.Delay(200);
        }
        Assert.Contains((await audit.QueryAsync(keyId, now.AddDays(-40), now.AddMinutes(1), 100, null)).Entries, e => e.Id == recent.Id);
    }

    [Fact]
    public async Task Audit_export_writes_every_event_of_the_range_as_JSON_lines_and_never_overwrites_a_file()
    {
        var prefix = TestStorage.NewTablePrefix();
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub), tablePrefix: prefix);
        var start = new DateTimeOffset(2031, 3, 1, 12, 0, 0, TimeSpan.Zero);
        var written = new List<AuditEntry>();
        foreach (var at in new[] { start, start.AddHours(20), start.AddHours(33), start.AddDays(3) })
        {
            written.Add(await WriterAt(gateway, at).WriteAsync(new AuditContext("cli:test", "local", null), "key.update", null, "success", "detail \"quoted\""));
        }
        var file = Path.Combine(Path.GetTempPath(), "funcproxy-export-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            var (code, output, error) = await RunCliAsync(prefix, "audit", "export", "--from", "2031-03-01", "--to", "2031-03-03", "--out", file);
            Assert.True(code == OperatorCli.Ok, error);
            Assert.Contains("3 event(s)", output, StringComparison.Ordinal);
            var lines = await File.ReadAllLinesAsync(file);
            var ids = lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetString()).ToList();
            Assert.Equal(written.Take(3).Reverse().Select(e => e.Id), ids);
            Assert.Equal("detail \"quoted\"", JsonDocument.Parse(lines[0]).RootElement.GetProperty("detail").GetString());

            var again = await RunCliAsync(prefix, "audit", "export", "--from", "2031-03-01", "--to", "2031-03-05", "--out", file);
            Assert.Equal(OperatorCli.Usage, again.Code);
            Assert.Equal(lines, await File.ReadAllLinesAsync(file));

            var toStdout = await RunCliAsync(prefix, "audit", "export", "--from", "2031-03-01", "--to", "2031-03-05");
            Assert.Equal(OperatorCli.Ok, toStdout.Code);
            Assert.Equal(4, toStdout.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

            Assert.Equal(OperatorCli.Usage, (await RunCliAsync(prefix, "audit", "export", "--to", "2031-03-05")).Code);
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static AuditLog WriterAt(GatewayHost gateway, DateTimeOffset time) =>
        new(gateway.Services.GetRequiredService<FuncProxyTables>(), new FakeTimeProvider(time));

    private async Task<(int Code, string Out, string Err)> RunCliAsync(string prefix, params string[] args) =>
        await CliRun.RunAsync(new Dictionary<string, string?>(Settings(_stub))
        {
            ["FuncProxy:Storage:ConnectionString"] = await TestStorage.GetConnectionStringAsync(),
            ["FuncProxy:Storage:TablePrefix"] = prefix,
        }, args);
}
