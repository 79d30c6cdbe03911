-- The label's definition, stated once: a high spender is a customer whose spending score is
-- above this. labels_high_spender applies it; training reads it for the card and the tiers.
create or replace view label_rule as
with cut as (
    select 50 as high_spender_above
),

final as (
    select
        high_spender_above,
        'spending_score > ' || high_spender_above as definition
    from cut
)

select * from final;
