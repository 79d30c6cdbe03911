-- The run's drift: PSI of each feature's and the probability's bins against the card's reference.
-- run_drift_counts holds the run's rows per (position, bin), run_drift_reference the expected shares;
-- both shares are floored at $floor, so an empty bin never divides by zero.
insert into scoring_drift (run_id, feature, psi, status, rows)
with reference as (
    select position, feature, bin, expected from run_drift_reference
),

counts as (
    select position, bin, n from run_drift_counts
),

joined as (
    select
        reference.position,
        reference.feature,
        reference.expected,
        coalesce(counts.n, 0) as n,
        sum(coalesce(counts.n, 0)) over (partition by reference.position) as scored
    from reference
    left join counts using (position, bin)
),

shares as (
    select
        position,
        feature,
        scored,
        greatest(case when scored > 0 then n / scored else 0 end, $floor) as actual,
        greatest(expected, $floor) as expected
    from joined
),

per_feature as (
    select position, feature, max(scored) as scored, sum((actual - expected) * ln(actual / expected)) as psi
    from shares
    group by position, feature
),

final as (
    select
        $run_id as run_id,
        feature,
        case when scored >= $min_rows then psi end as psi,
        case
            when scored < $min_rows then 'too few rows'
            when psi >= $alert then 'alert'
            when psi >= $warn then 'warn'
            else 'ok'
        end as status,
        scored as rows,
        position
    from per_feature
)

select run_id, feature, psi, status, rows from final order by position
