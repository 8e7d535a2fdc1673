using FuncProxy.Admin;
using Microsoft.Azure.Functions.Worker;

namespace FuncProxy.Functions;

/// <summary>
/// Audit retention on the Functions host: daily at 03:17 UTC, deletes audit events older than
/// <c>FuncProxy:Audit:Retention</c> through <see cref="AuditRetention"/>. Timer triggers run on one instance at a time
/// (the host holds a blob lease for them), and the sweep is safe to repeat, so a missed or doubled run does no harm.
/// </summary>
public sealed class AuditRetentionFunction
{
    private readonly AuditRetention _retention;

    public AuditRetentionFunction(AuditRetention retention)
    {
        ArgumentNullException.ThrowIfNull(retention);
        _retention = retention;
    }

    // TimerTriggerAttribute(string schedule) with a six-field NCRONTAB expression and TimerInfo, both in namespace
    // Microsoft.Azure.Functions.Worker (Azure/azure-functions-dotnet-worker, extensions/Worker.Extensions.Timer/src).
    // Flex Consumption takes only NCRONTAB schedules, not TimeSpan ones.
    [Function("AuditRetention")]
    public Task RunAsync([TimerTrigger("0 17 3 * * *")] TimerInfo timer, CancellationToken cancellationToken) =>
        _retention.SweepAsync(cancellationToken);
}
