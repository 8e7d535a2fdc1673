using Microsoft.Extensions.Options;

namespace FuncProxy.Http;

/// <summary>
/// The per-IP lockout for refused client keys (<see cref="KeyOptions.MaxFailuresPerIp"/>), checked in the proxy's
/// authenticate step before any key is looked at.
/// </summary>
public sealed class ClientKeyLockout
{
    public ClientKeyLockout(IOptionsMonitor<FuncProxyOptions> options, TimeProvider time, IpCounters? counters = null, LockoutBoard? board = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Lockout = new FailureLockout(LockoutBoard.KeysScope, () =>
        {
            var k = options.CurrentValue.Keys;
            return (k.MaxFailuresPerIp, k.FailureWindow, k.LockoutDuration);
        }, time, counters, board);
    }

    public FailureLockout Lockout { get; }
}
