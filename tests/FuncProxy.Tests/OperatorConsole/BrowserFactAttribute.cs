namespace FuncProxy.Tests.OperatorConsole;

/// <summary>
/// A test that drives the console in headless Chromium. Browsers cannot be downloaded here, so Playwright launches
/// Debian's <c>chromium</c> (<see cref="ConsoleBrowser.ExecutablePath"/>). Without it the test is skipped with the reason,
/// except in CI (<c>CI=true</c>, where <c>.ci/run</c> installs it): there a missing browser fails the test.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        if (!File.Exists(ConsoleBrowser.ExecutablePath) && !ConsoleBrowser.InCi)
        {
            Skip = $"No Chromium at {ConsoleBrowser.ExecutablePath} (install Debian's: apt-get install -y chromium, or set " +
                $"{ConsoleBrowser.ExecutableVariable}). CI (CI=true) runs these tests and fails without it.";
        }
    }
}
