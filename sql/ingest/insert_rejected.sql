-- Quarantine every rejected line of this load with its line number, raw fields and reason.
-- A plain row that passed the row rules (rejected later: its id is on two lines) kept no raw
-- text: its fields print back exactly from the parsed values (see validate_customers.sql).
with rejected as (
    select
        line_no,
        reason,
        case when raw_customer_id is null and plain then cast(customer_id as varchar) else raw_customer_id end
            as raw_customer_id,
        case when raw_gender is null and plain then gender else raw_gender end as raw_gender,
        case when raw_age is null and plain then cast(age as varchar) else raw_age end as raw_age,
        case
            when raw_annual_income is null and plain then cast(cast(annual_income as bigint) as varchar)
            else raw_annual_income
        end as raw_annual_income,
        case
            when raw_spending_score is null and plain then coalesce(cast(spending_score as varchar), '')
            else raw_spending_score
        end as raw_spending_score
    from mallscore_ingest_stage
    where reason is not null
),

final as (
    select
        $load_id as load_id,
        null as run_id,
        line_no,
        left(raw_customer_id, 200) as customer_id,
        to_json({
            customer_id: left(raw_customer_id, 200),
            gender: left(raw_gender, 200),
            age: left(raw_age, 200),
            annual_income: left(raw_annual_income, 200),
            spending_score: left(raw_spending_score, 200)
        }) as raw_values,
        reason,
        $now as rejected_at
    from rejected
)

insert into rejected_rows
select * from final
order by line_no
