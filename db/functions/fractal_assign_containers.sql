-- Many assignments in one call and one transaction (group commit). Each runs in a block of its own (a
-- subtransaction): one that raises (FR0xx, or any error) is rolled back alone and answered
-- {"error": {code, message, detail}}, the others {"ok": <fractal_assign_container's answer>}, in the order
-- given. Callers order a batch by user and key, so two batches take their locks in one order.
-- p_items: [{user, key, hash, app, region, dpi, aesKey, secretHash, deadline, terms, prefer, cluster}, ...]
create or replace function fractal_assign_containers(p_items jsonb) returns jsonb language plpgsql as $$
declare
  v_item jsonb;
  v_answers jsonb[] := '{}';
  v_code text;
  v_message text;
  v_detail text;
begin
  for v_item in select value from jsonb_array_elements(p_items) loop
    begin
      v_answers := v_answers || jsonb_build_object('ok', fractal_assign_container(
        (v_item->>'user')::uuid, v_item->>'key', v_item->>'hash', v_item->>'app', v_item->>'region',
        (v_item->>'dpi')::integer, v_item->>'aesKey', v_item->>'secretHash', (v_item->>'deadline')::timestamptz,
        nullif(v_item->'terms', 'null'::jsonb),
        case when jsonb_typeof(v_item->'prefer') = 'array' then array(select jsonb_array_elements_text(v_item->'prefer')) end,
        (v_item->>'cluster')::uuid));
    exception when others then
      get stacked diagnostics v_code = returned_sqlstate, v_message = message_text, v_detail = pg_exception_detail;
      v_answers := v_answers || jsonb_build_object('error', jsonb_build_object('code', v_code, 'message', v_message, 'detail', nullif(v_detail, '')));
    end;
  end loop;
  return to_jsonb(v_answers);
end $$;
