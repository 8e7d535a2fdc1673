using System.Collections.Concurrent;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using Microsoft.Extensions.Options;

namespace FuncProxy.Spend;

/// <summary>One model's prices, in US dollars per million tokens (so a token count times a price is micro-dollars).</summary>
public sealed record ModelPrice(string Pattern, decimal InputPerMillion, decimal OutputPerMillion, decimal CachedInputPerMillion, decimal CacheWriteInputPerMillion)
{
    /// <summary>
    /// The most a call can cost, in micro-dollars, rounded up: every input token at the dearest input price (a cache write
    /// can cost more than plain input) and every possible output token.
    /// </summary>
    public long MostExpensiveMicroUsd(long inputTokens, long maxOutputTokens) =>
        Micro((inputTokens * Math.Max(InputPerMillion, CacheWriteInputPerMillion)) + (maxOutputTokens * OutputPerMillion));

    /// <summary>The cost of reported usage, in micro-dollars, rounded up: cached and cache-write input at their own prices.</summary>
    public long CostMicroUsd(TokenUsage usage)
    {
        var input = usage.InputTokens ?? 0;
        var cached = Math.Min(usage.CachedInputTokens ?? 0, input);
        var written = Math.Min(usage.CacheWriteInputTokens ?? 0, input - cached);
        return Micro(((input - cached - written) * InputPerMillion) + (cached * CachedInputPerMillion)
            + (written * CacheWriteInputPerMillion) + ((usage.OutputTokens ?? 0) * OutputPerMillion));
    }

    private static long Micro(decimal value) => value <= 0 ? 0 : value >= long.MaxValue ? long.MaxValue : (long)Math.Ceiling(value);
}

/// <summary>
/// The configured prices per upstream (<c>FuncProxy:Upstreams:{name}:Prices</c>), looked up by the model a call sends. A model
/// no pattern matches is unpriced: there is no fallback price, not even the documented default table.
/// </summary>
public sealed class PriceTable
{
    /// <summary>Largest price accepted, USD per million tokens (a typo guard).</summary>
    public const decimal MaxPricePerMillion = 10_000m;

    private const int MaxCached = 10_000;

    private readonly Dictionary<string, ModelPrice[]> _byUpstream = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<(string Upstream, string Model), ModelPrice?> _found = new();

    public PriceTable(IOptions<FuncProxyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (name, upstream) in options.Value.Upstreams)
        {
            _byUpstream[name] = [.. upstream.Prices.Where(p => p.Model is not null).Select(p => new ModelPrice(
                p.Model!, p.InputPerMillion ?? 0, p.OutputPerMillion ?? 0,
                p.CachedInputPerMillion ?? p.InputPerMillion ?? 0, p.CacheWriteInputPerMillion ?? p.InputPerMillion ?? 0))];
        }
    }

    /// <summary>The price of <paramref name="model"/> on <paramref name="upstream"/>, or null when it is unpriced.</summary>
    public ModelPrice? Find(string upstream, string? model)
    {
        ArgumentNullException.ThrowIfNull(upstream);
        if (model is null || !_byUpstream.TryGetValue(upstream, out var prices) || prices.Length == 0)
        {
            return null;
        }
        if (_found.TryGetValue((upstream, model), out var known))
        {
            return known;
        }
        var price = BestPrice(prices, model);
        if (_found.Count < MaxCached)
        {
            _found[(upstream, model)] = price;
        }
        return price;
    }

    // The first look for (upstream, model); apart from Find, whose cache hits would otherwise allocate this lambda's closure.
    private static ModelPrice? BestPrice(ModelPrice[] prices, string model)
    {
        var pattern = ModelPattern.BestMatch(prices.Select(p => p.Pattern), model);
        return pattern is null ? null : prices.First(p => p.Pattern == pattern);
    }

    internal static void Validate(string at, List<ModelPriceOptions> prices, List<string> errors)
    {
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < prices.Count; i++)
        {
            var p = prices[i];
            var here = $"{at}:{i}";
            if (!ModelPattern.IsValid(p.Model))
            {
                errors.Add($"{here}:Model must be a model name or glob of 1-{ModelPattern.MaxLength} characters.");
            }
            else if (!seen.Add(p.Model!))
            {
                errors.Add($"{here}:Model '{p.Model}' is priced twice on this upstream.");
            }
            if (p.InputPerMillion is null || p.OutputPerMillion is null)
            {
                errors.Add($"{here}: InputPerMillion and OutputPerMillion are required (USD per million tokens).");
            }
            foreach (var (field, value) in new[] { ("InputPerMillion", p.InputPerMillion), ("OutputPerMillion", p.OutputPerMillion),
                ("CachedInputPerMillion", p.CachedInputPerMillion), ("CacheWriteInputPerMillion", p.CacheWriteInputPerMillion) })
            {
                if (value is < 0 or > MaxPricePerMillion)
                {
                    errors.Add($"{here}:{field} must be between 0 and {MaxPricePerMillion} USD per million tokens.");
                }
            }
        }
    }
}
