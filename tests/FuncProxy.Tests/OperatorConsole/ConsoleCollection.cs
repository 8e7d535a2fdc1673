namespace FuncProxy.Tests.OperatorConsole;

/// <summary>
/// The browser tests run alone, after the parallel ones: Chromium is the heaviest process of the suite, and the
/// limiter's accuracy tests should not share two cores with it (nor should the browser's waits share them with those).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    public const string Name = "Operator console in Chromium";
}
