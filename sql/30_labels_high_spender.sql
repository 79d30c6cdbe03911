-- The label: HighSpender = spending score > 50, for customers whose score is known.
-- unique_key: customer_id
create or replace view labels_high_spender as
with customers as (
    select * from stg_customers
),

final as (
    select
        customer_id,
        spending_score,
        cast(spending_score > 50 as integer) as high_spender
    from customers
    where spending_score is not null
)

select * from final;
