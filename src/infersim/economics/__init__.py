"""Economics: cost per million tokens, power, tokens per MW and per USD, revenue / ROI / payback
at token price tiers, for a built plan and its throughput (`plan_economics`). Prices come from the
hardware catalog (capex_usd, cloud_usd_per_hour on chips and systems) and catalog/data/economics.yaml
(lifetime, PUE, electricity, idle draw, token tiers), each with its source or range."""
from infersim.economics.cost import (PRICINGS, Economics, PriceUse, Throughput, TierResult, plan_economics,
                                     splits_prefill, throughput_of_plan_estimate, throughput_of_simulation,
                                     throughput_of_static)
from infersim.economics.prices import Prices, load_prices, split_overrides

__all__ = ["PRICINGS", "Economics", "PriceUse", "Prices", "Throughput", "TierResult", "load_prices",
           "plan_economics", "split_overrides", "splits_prefill", "throughput_of_plan_estimate",
           "throughput_of_simulation", "throughput_of_static"]
