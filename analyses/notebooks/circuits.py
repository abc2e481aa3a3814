"""Cells of notebooks/circuits.ipynb (an indirect-object circuit in the embedded model: logit
difference, direct logit attribution, activation and attribution patching, steering, logit lens)."""

CELLS = [
    (
        "markdown",
        "# An indirect-object circuit in SmolLM2-135M\n\n"
        "Indirect-object identification (IOI, Wang et al. 2022): in *When Mary and John went to "
        "the store, John gave a drink to*, the model should say *Mary*, the name that is not "
        "repeated. The **clean** prompts have that form; the **corrupted** ones repeat the other "
        "name (*..., Mary gave a drink to*), which makes the other name the answer. The metric is "
        "the **logit difference** `logit(right) - logit(wrong)` at the last token, right and "
        "wrong being the clean run's answer and the repeated name. Every number below is "
        "computed by the cell above it.",
    ),
    (
        "code",
        "import torch\n"
        "import interp\n"
        "from interp.patching import (\n"
        "    activation_patching, attribution_patching, direct_logit_attribution, logit_diff,\n"
        "    logit_lens, mean_difference, steer, steering_edits,\n"
        ")\n\n"
        "torch.set_num_threads(2)\n"
        "lm = interp.load_model()  # the embedded SmolLM2-135M-Instruct\n"
        "clean = [\n"
        '    "When Mary and John went to the store, John gave a drink to",\n'
        '    "When Tom and Anna went to the park, Anna gave a ball to",\n'
        '    "When Lisa and Mark went to the office, Mark gave a book to",\n'
        "]\n"
        "corrupted = [\n"
        '    "When Mary and John went to the store, Mary gave a drink to",\n'
        '    "When Tom and Anna went to the park, Tom gave a ball to",\n'
        '    "When Lisa and Mark went to the office, Lisa gave a book to",\n'
        "]\n"
        'right, wrong = [" Mary", " Tom", " Lisa"], [" John", " Anna", " Mark"]\n'
        "print([len(lm.to_str_tokens(t)) for t in clean + corrupted], 'tokens per prompt')",
    ),
    (
        "markdown",
        "## Logit difference and direct logit attribution\n"
        "`direct_logit_attribution` splits the last residual stream into what each head, MLP, "
        "the embeddings and the biases wrote, and projects each part through the final norm "
        "(its per-position scale frozen at the run's value, which makes the split linear) and "
        "the unembedding direction `W_U[:, right] - W_U[:, wrong]`. The parts sum to the "
        "model's own logit difference (Llama-family models have no logit multiplier or softcap).",
    ),
    (
        "code",
        "dla = direct_logit_attribution(lm, clean, right, wrong)\n"
        "dla_corrupted = direct_logit_attribution(lm, corrupted, right, wrong)\n"
        "print(f'clean logit difference     {dla.logit_diff.mean():+.3f} (per prompt: '\n"
        "      f'{[round(v, 2) for v in dla.logit_diff[:, 0].tolist()]})')\n"
        "print(f'corrupted logit difference {dla_corrupted.logit_diff.mean():+.3f}')\n"
        "gap = (dla.values.sum(0) - dla.logit_diff).abs().max()\n"
        "print(f'sum of the DLA parts minus the model\\'s logit difference: {gap:.1e} (max)')\n"
        "print(dla.table(k=8))",
    ),
    ("code", "dla.figure('heads')"),
    (
        "code",
        "heads = dla.head_map()\n"
        "order = heads.flatten().argsort(descending=True)\n"
        "top_dla = [(int(i) // lm.n_heads, int(i) % lm.n_heads) for i in order[:3]]\n"
        "share = heads.flatten()[order[:3]].sum() / dla.total.mean()\n"
        "print('heads writing most for the right name:', ', '.join(f'L{l}H{h}' for l, h in top_dla))\n"
        "print(f'together {share:.0%} of the clean logit difference')",
    ),
    (
        "markdown",
        "## Activation patching\n"
        "Run the first corrupted prompt, replace one activation by its value on the matching "
        "clean prompt, and measure the logit difference. Patched runs are batched along the "
        "batch axis. First the residual stream before each layer (every third layer), at each "
        "position: where does the information that decides the answer sit?",
    ),
    (
        "code",
        "metric = logit_diff(lm, right[0], wrong[0])\n"
        "resid = activation_patching(\n"
        "    lm, clean[0], corrupted[0], metric, sites='resid_pre', layers=range(0, lm.n_layers, 3)\n"
        ")\n"
        "tokens = lm.to_str_tokens(clean[0])\n"
        "best = resid.effects.flatten().argmax()\n"
        "layer, position = divmod(int(best), resid.effects.shape[1])\n"
        "print(f'largest recovery: layer {resid.layers[layer]}, position {position} '\n"
        "      f'({tokens[position]!r}), metric {resid.values.flatten()[best]:+.3f} '\n"
        "      f'(clean {resid.clean_metric.mean():+.3f}, corrupted {resid.corrupted_metric.mean():+.3f})')",
    ),
    ("code", "resid.figure()"),
    (
        "markdown",
        "Per head: patch each head's output `z` (before `W_O`) at the last position only.",
    ),
    (
        "code",
        "last = len(tokens) - 1\n"
        "z = activation_patching(lm, clean[0], corrupted[0], metric, sites='z', positions=[last])\n"
        "flat = z.effects.flatten()\n"
        "top_patch = [(int(i) // lm.n_heads, int(i) % lm.n_heads) for i in flat.argsort(descending=True)[:3]]\n"
        "print('heads whose clean output restores the most:', ', '.join(f'L{l}H{h}' for l, h in top_patch))\n"
        "print('also among the top 3 by DLA:', sorted(set(top_patch) & set(top_dla)))",
    ),
    ("code", "z.figure()"),
    (
        "markdown",
        "## Attribution patching beside it\n"
        "The first-order estimate `(clean - corrupted) · ∂metric/∂activation`, from one forward "
        "pass on the clean prompt and one forward + backward pass on the corrupted one, for the "
        "same cells.",
    ),
    (
        "code",
        "z_attr = attribution_patching(lm, clean[0], corrupted[0], metric, sites='z', positions=[last])\n"
        "resid_attr = attribution_patching(\n"
        "    lm, clean[0], corrupted[0], metric, sites='resid_pre', layers=range(0, lm.n_layers, 3)\n"
        ")\n"
        "for name, exact, estimate in [('z, last position', z, z_attr), ('resid_pre', resid, resid_attr)]:\n"
        "    a, b = exact.effects.flatten(), estimate.effects.flatten()\n"
        "    r = torch.corrcoef(torch.stack([a, b]))[0, 1]\n"
        "    print(f'{name:<18} correlation of attribution with activation patching: {r:.3f}')",
    ),
    ("code", "z_attr.figure()"),
    (
        "markdown",
        "## Steering\n"
        "A steering vector: the mean difference of the residual stream before layer 22 at the "
        "last token, clean prompts minus corrupted ones. Added (times a scale) at every "
        "position of the corrupted prompts, it moves their logit difference (the table: one row "
        "per layer, one column per scale).",
    ),
    (
        "code",
        "layer = 22\n"
        "vector = mean_difference(lm, clean, corrupted, layer)\n"
        "steered = steer(lm, corrupted, vector, right, wrong, layers=[layer], scales=[0, 1, 2])\n"
        "print(steered.table())",
    ),
    (
        "markdown",
        "The same vector in generation, on a prompt it was not computed from: the corrupted form "
        "(the first name repeated), so the unsteered answer is the second name.",
    ),
    (
        "code",
        'prompt = "When Alice and Bob went to the beach, Alice handed a towel to"\n'
        "plain = lm.generate(prompt, max_new_tokens=4)\n"
        "edits = steering_edits(vector, layer, scale=2.0)\n"
        "pushed = lm.generate(prompt, max_new_tokens=4, edits=edits)\n"
        "alice, bob = (int(lm.to_tokens(t, prepend_bos=False)[0, 0]) for t in (' Alice', ' Bob'))\n"
        "for name, run_edits, out in [('unsteered', None, plain), ('steered x2', edits, pushed)]:\n"
        "    logits, _ = lm.run(prompt, edits=run_edits)\n"
        "    diff = float(logits[0, -1, alice] - logits[0, -1, bob])\n"
        "    print(f'{name:<11} logit(Alice) - logit(Bob) {diff:+.2f}, continues with '\n"
        "          f'{lm.to_string(out.new_tokens[0])!r}')",
    ),
    (
        "markdown",
        "## Logit lens\n"
        "Each layer's residual stream at each position through the final norm and the "
        "unembedding: from which layer is the right name the top prediction at the last token?",
    ),
    (
        "code",
        "lens = logit_lens(lm, clean[0], targets=[right[0], wrong[0]])\n"
        "winner = lens.top_ids[:, -1, 0] == lm.to_tokens(right[0], prepend_bos=False)[0, 0]\n"
        "stays = winner.flip(0).int().cumprod(0).flip(0).bool()  # top here and in every later row\n"
        "first = lens.rows[int(stays.float().argmax())] if stays.any() else None\n"
        "print(f'{right[0]!r} is the top token at the last position from {first} on' if first\n"
        "      else f'{right[0]!r} is not the final top token')\n"
        "print(lens.table())",
    ),
    ("code", "lens.figure(target=0)"),
]
