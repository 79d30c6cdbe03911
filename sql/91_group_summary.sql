-- Per behaviour group: customers, mean income and score, share of the grouped customers, and how
-- many of them are in each segment (the tiers of the default model: premium, loyalty, nurture,
-- low_priority; other tier names count in none of these columns). Customers without a group
-- (no observed score) are not listed.
create or replace view group_summary as
with segments as (
    select * from main.segments
),

features as (
    select * from features_customer
),

grouped as (
    select
        segments.behaviour_group,
        segments.segment,
        features.annual_income,
        features.spending_score
    from segments
    inner join features using (customer_id)
    where segments.behaviour_group is not null
),

final as (
    select
        behaviour_group,
        count(*) as customers,
        avg(annual_income) as mean_annual_income,
        avg(spending_score) as mean_spending_score,
        count(*) / sum(count(*)) over () as share,
        count(*) filter (where segment = 'premium') as premium,
        count(*) filter (where segment = 'loyalty') as loyalty,
        count(*) filter (where segment = 'nurture') as nurture,
        count(*) filter (where segment = 'low_priority') as low_priority
    from grouped
    group by behaviour_group
)

select * from final
order by customers desc, behaviour_group;
