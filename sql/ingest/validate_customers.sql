-- Parse and validate raw incoming rows. reason is NULL for a row that loads.
-- Every rule yields a message a person can act on; the first failing rule wins.
with incoming as (
    select * from incoming_customers
),

parsed as (
    select
        line_no,
        customer_id as raw_customer_id,
        gender as raw_gender,
        age as raw_age,
        annual_income as raw_annual_income,
        spending_score as raw_spending_score,
        trim(coalesce(customer_id, '')) as id_text,
        case
            when regexp_full_match(trim(coalesce(customer_id, '')), '\+?[0-9]{1,18}')
                then cast(trim(customer_id) as bigint)
        end as customer_id,
        case upper(trim(coalesce(gender, '')))
            when 'FEMALE' then 'Female'
            when 'F' then 'Female'
            when 'MALE' then 'Male'
            when 'M' then 'Male'
        end as gender,
        trim(coalesce(age, '')) as age_text,
        try_cast(trim(age) as double) as age_value,
        trim(coalesce(annual_income, '')) as income_text,
        try_cast(trim(annual_income) as double) as income_value,
        trim(coalesce(spending_score, '')) as score_text,
        try_cast(trim(spending_score) as double) as score_value
    from incoming
),

checked as (
    select
        *,
        case
            when id_text = '' then 'customer_id is missing'
            when customer_id is null
                then 'customer_id "' || left(id_text, 40) || '" is not a whole number'
            when count(*) over (partition by customer_id) > 1
                then 'customer_id ' || customer_id || ' appears on more than one line of this input; keep one line per customer'
            when trim(coalesce(raw_gender, '')) = '' then 'gender is missing'
            when gender is null
                then 'gender "' || left(trim(raw_gender), 40) || '" is not one of Male, Female, M, F'
            when age_text = '' then 'age is missing'
            when age_value is null or not isfinite(age_value)
                then 'age "' || left(age_text, 40) || '" is not a number'
            when age_value <> floor(age_value)
                then 'age ' || age_text || ' is not a whole number of years'
            when age_value < 12 or age_value > 120
                then 'age ' || age_text || ' is outside 12..120'
            when income_text = '' then 'annual income is missing'
            when income_value is null or not isfinite(income_value)
                then 'annual income "' || left(income_text, 40) || '" is not a number'
            when income_value < 0
                then 'annual income ' || income_text || ' is negative'
            when score_text <> '' and (score_value is null or not isfinite(score_value))
                then 'spending score "' || left(score_text, 40) || '" is not a number (leave it empty for a new customer)'
            when score_text <> '' and score_value <> floor(score_value)
                then 'spending score ' || score_text || ' is not a whole number'
            when score_text <> '' and (score_value < 1 or score_value > 100)
                then 'spending score ' || score_text || ' is outside 1..100'
        end as reason
    from parsed
),

final as (
    select
        line_no,
        raw_customer_id,
        raw_gender,
        raw_age,
        raw_annual_income,
        raw_spending_score,
        customer_id,
        gender,
        case when reason is null then cast(age_value as integer) end as age,
        case when reason is null then income_value end as annual_income,
        case when reason is null and score_text <> '' then cast(score_value as integer) end as spending_score,
        reason
    from checked
)

select * from final
