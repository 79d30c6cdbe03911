-- The label: HighSpender = spending score above label_rule's cut, for customers whose score is known.
-- unique_key: customer_id
create or replace view labels_high_spender as
with customers as (
    select * from stg_customers
),

label_rule as (
    select * from label_rule
),

final as (
    select
        customers.customer_id,
        customers.spending_score,
        cast(customers.spending_score > label_rule.high_spender_above as integer) as high_spender
    from customers
    cross join label_rule
    where customers.spending_score is not null
)

select * from final;
