-- May this user start a container now, within which limits? The one answer, from local state only.
-- p_terms: {"trialDays": n, "trialContainers": n, "graceDays": n}. Returns
-- {"plan": id | null, "concurrentContainers": n, "regions": [..] | null, "maxDpi": n} (plan null: the trial) or raises FR008 with the reason as detail:
-- 'no account', 'trial ended', 'past due', 'status <status>' or 'hours <hoursPerMonth>'.
create or replace function fractal_entitlement(p_user uuid, p_terms jsonb) returns jsonb language plpgsql stable as $$
declare
  v_created timestamptz;
  v_status text;
  v_past_due_since timestamptz;
  v_period_start timestamptz;
  v_plan jsonb;
  v_plan_id text;
  v_used bigint;
begin
  select a.created_at, s.status, s.past_due_since, s.current_period_start, p.entitlements, p.id
    into v_created, v_status, v_past_due_since, v_period_start, v_plan, v_plan_id
    from account a left join subscription s on s.user_id = a.id left join plan p on p.id = s.plan_id
    where a.id = p_user;
  if v_created is null then
    raise exception 'payment required' using errcode = 'FR008', detail = 'no account';
  end if;
  if v_plan is not null and (v_status in ('active', 'trialing') or (v_status = 'past_due' and v_past_due_since is not null
      and v_past_due_since + make_interval(days => (p_terms->>'graceDays')::integer) > now())) then
    if v_plan->'hoursPerMonth' <> 'null'::jsonb then
      select coalesce(sum(seconds), 0) into v_used from usage_record
        where user_id = p_user and ended_at >= coalesce(v_period_start, v_created);
      if v_used >= (v_plan->>'hoursPerMonth')::numeric * 3600 then
        raise exception 'payment required' using errcode = 'FR008', detail = 'hours ' || (v_plan->>'hoursPerMonth');
      end if;
    end if;
    return jsonb_build_object('plan', v_plan_id, 'concurrentContainers', v_plan->'concurrentContainers', 'regions', v_plan->'regions', 'maxDpi', v_plan->'maxDpi');
  end if;
  if v_status is null and v_created + make_interval(days => (p_terms->>'trialDays')::integer) > now() then
    return jsonb_build_object('plan', null, 'concurrentContainers', (p_terms->>'trialContainers')::integer, 'regions', null, 'maxDpi', 480);
  end if;
  raise exception 'payment required' using errcode = 'FR008',
    detail = case when v_status = 'past_due' then 'past due' when v_status is not null then 'status ' || v_status else 'trial ended' end;
end $$;
