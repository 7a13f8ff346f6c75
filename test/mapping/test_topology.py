import numpy as np

from geoloc_ros.mapping.topology import adjacent_panorama_pairs, view_topology


def test_adjacency_from_distance_and_links():
    positions = np.array([[0.0, 0.0, 2.5], [18.0, 0.0, 2.5], [36.0, 0.0, 2.5], [200.0, 0.0, 2.5]])
    pairs = adjacent_panorama_pairs(positions, [[], [], [], [0]], adjacency_m=20.0)
    assert pairs.tolist() == [[0, 1], [0, 3], [1, 2]]
    without_links = adjacent_panorama_pairs(positions, [[], [], [], [0]], adjacency_m=20.0, use_links=False)
    assert without_links.tolist() == [[0, 1], [1, 2]]
    assert adjacent_panorama_pairs(positions, [[], [], [], []], adjacency_m=0.0).shape == (0, 2)


def test_views_of_same_or_adjacent_panoramas_are_connected_with_their_distance():
    rng = np.random.default_rng(4)
    pano = np.array([2, 0, 1, 0, 2, 1, 1, 0, 3])
    positions = rng.uniform(-20, 20, size=(len(pano), 3))
    pairs = np.array([[0, 1], [1, 2]])
    topology = view_topology(pano, positions, pairs, n_panoramas=4)
    adjacent = {(0, 0), (1, 1), (2, 2), (3, 3), (0, 1), (1, 0), (1, 2), (2, 1)}
    for i in range(len(pano)):
        neighbours, distances = topology.neighbours(i)
        expected = [j for j in range(len(pano)) if j != i and (pano[i], pano[j]) in adjacent]
        assert neighbours.tolist() == expected
        assert np.allclose(distances, np.linalg.norm(positions[expected] - positions[i], axis=1), atol=1e-5)
    assert topology.neighbours(8)[0].size == 0  # panorama 3 has one view and no neighbour
