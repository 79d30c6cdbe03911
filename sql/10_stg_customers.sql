-- Staging: rename and cast only.
-- unique_key: customer_id
create or replace view stg_customers as
with customers as (
    select * from raw_customers
),

final as (
    select
        customer_id,
        gender,
        cast(age as double) as age,
        cast(annual_income as double) as annual_income,
        cast(spending_score as double) as spending_score,
        load_id,
        updated_at
    from customers
)

select * from final;
