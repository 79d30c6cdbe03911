-- Per segment: customers, mean probability and share of all segmented customers.
create or replace view segment_summary as
with segments as (
    select * from main.segments
),

final as (
    select
        segment,
        count(*) as customers,
        avg(p_high_spender) as mean_p_high_spender,
        count(*) / sum(count(*)) over () as share
    from segments
    group by segment
)

select * from final
order by mean_p_high_spender desc;
