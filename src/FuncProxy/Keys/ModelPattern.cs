using System.IO.Enumeration;
using System.Text;

namespace FuncProxy.Keys;

/// <summary>
/// Model name patterns (allow-lists, per-model limits, price tables): <c>*</c> matches any run of characters, <c>?</c> one
/// character, case-insensitive. Matching is <see cref="FileSystemName.MatchesSimpleExpression(ReadOnlySpan{char}, ReadOnlySpan{char}, bool)"/>,
/// which treats no other character (not even <c>/</c>) specially.
/// </summary>
public static class ModelPattern
{
    /// <summary>Longest pattern or model name accepted in a key record or a price table.</summary>
    public const int MaxLength = 256;

    public static bool Matches(string pattern, string model)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(model);
        return FileSystemName.MatchesSimpleExpression(pattern, model, ignoreCase: true);
    }

    /// <summary>The pattern that matches <paramref name="model"/> most specifically (the longest without wildcards counted), or null.</summary>
    public static string? BestMatch(IEnumerable<string> patterns, string model)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        ArgumentNullException.ThrowIfNull(model);
        string? best = null;
        var bestScore = -1;
        foreach (var p in patterns)
        {
            if (!Matches(p, model))
            {
                continue;
            }
            var score = p.Count(c => c is not ('*' or '?'));
            if (score > bestScore)
            {
                best = p;
                bestScore = score;
            }
        }
        return best;
    }

    /// <summary>A valid pattern or name: 1-256 characters, no control characters.</summary>
    public static bool IsValid(string? pattern) =>
        !string.IsNullOrWhiteSpace(pattern) && pattern.Length <= MaxLength && !pattern.Any(char.IsControl);

    /// <summary>
    /// A form of a model name or pattern that is safe inside Table Storage keys and rate-limit policy names: ASCII
    /// letters, digits, <c>.</c>, <c>_</c> and <c>-</c> stay, <c>*</c> becomes <c>~</c>, <c>?</c> becomes <c>!</c>, every other
    /// UTF-8 byte becomes <c>%XX</c> (so <c>/ \ # ?</c>, control characters, <c>:</c> and <c>|</c> never appear). Lower-cased
    /// first, since matching ignores case.
    /// </summary>
    public static string KeySafe(string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var s = new StringBuilder(model.Length + 8);
        foreach (var b in Encoding.UTF8.GetBytes(model.ToLowerInvariant()))
        {
            var c = (char)b;
            if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '_' or '-')
            {
                s.Append(c);
            }
            else if (c == '*')
            {
                s.Append('~');
            }
            else if (c == '?')
            {
                s.Append('!');
            }
            else
            {
                s.Append('%').Append(((int)b).ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        return s.ToString();
    }
}
