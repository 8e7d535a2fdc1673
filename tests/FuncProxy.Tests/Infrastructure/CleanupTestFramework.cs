using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: Xunit.TestFramework("FuncProxy.Tests.Infrastructure.CleanupTestFramework", "FuncProxy.Tests")]

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// xUnit's own framework, plus one thing at the end of the run: every Azurite and child process the tests started and
/// that is still running is killed. The runner disposes the framework when the run is over, before the test host exits;
/// the ProcessExit handlers alone were not enough, since vstest may kill a test host that is slow to exit, and a killed
/// host runs no handler (seen: a shared Azurite left running after a green suite).
/// </summary>
public sealed class CleanupTestFramework : XunitTestFramework
{
    public CleanupTestFramework(IMessageSink messageSink)
        : base(messageSink) => DisposalTracker.Add(new EndOfRun());

    private sealed class EndOfRun : IDisposable
    {
        public void Dispose()
        {
            AzuriteProcess.KillAll();
            ChildProcess.KillAll();
        }
    }
}
