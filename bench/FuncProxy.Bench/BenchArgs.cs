using System.Globalization;

namespace FuncProxy.Bench;

/// <summary>The benchmarks' command-line options (<c>--name value</c>) and invariant-culture formatting, for every mode.</summary>
internal static class BenchArgs
{
    public static int Option(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    public static string? StringOption(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    public static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
